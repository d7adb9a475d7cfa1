# The two commands of the README: `make up` runs a single-node cluster, `make test` passes the tests.
# Both install what they need first (`make setup`), apt packages included, on a fresh Debian 12 as root.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA_DIR ?= $(if $(filter 0,$(shell id -u)),/var/lib/kates,$(HOME)/.local/share/kates)
APT_PACKAGES := python3 python3-venv python3-dev sqlite3 ca-certificates curl

.PHONY: setup up test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@if ! $(PYTHON) -m venv --help >/dev/null 2>&1 || ! command -v curl >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	  else echo "need: $(APT_PACKAGES)"; exit 1; fi; fi
	@command -v kubectl >/dev/null || echo "warning: kubectl is not on PATH; tests that drive kubectl will fail"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	@touch $@

up: setup
	$(VENV)/bin/kates server --data-dir $(DATA_DIR)

test: setup
	$(PY) -m pytest -q -p no:cacheprovider tests; code=$$?; \
	  if [ $$code = 5 ]; then echo "no tests ran"; exit 1; fi; exit $$code

bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) *.egg-info
