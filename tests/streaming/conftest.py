"""Registers the `env` fixture of streamenv.py (a module, so tests import its helpers by an unshadowed name)."""
from streamenv import env  # noqa: F401
