# The two commands of the README: `make up` runs a single-node cluster, `make test` passes the tests.
# Both install what they need first (`make setup`), apt packages included, on a fresh Debian 12 as root.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA_DIR ?= $(if $(filter 0,$(shell id -u)),/var/lib/kates,$(HOME)/.local/share/kates)
APT_PACKAGES := python3 python3-venv python3-dev sqlite3 ca-certificates curl
# What a node running real containers needs (kates/runtime: containerd + CRI). The node agent builds the local images
# (localhost/busybox:latest, localhost/pause:3.9) and imports them into its own containerd at start when missing: a
# node's containerd and data dir exist only once the agent runs, and the import costs ~0.3 s once.
NODE_APT_PACKAGES := containerd runc crun containernetworking-plugins busybox-static catatonit conntrack iptables \
	nftables umoci skopeo iproute2 docker-registry

.PHONY: setup node-packages up test bench clean

setup: $(VENV)/.installed node-packages

node-packages:
	@missing=$$(for p in $(NODE_APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	  | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing $$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "warning: missing $$missing (needed for real containers; the agent falls back to the process runtime)"; fi; fi

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
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
	$(PY) bench/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) *.egg-info
