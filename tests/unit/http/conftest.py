"""Fixtures of the HTTP transport tests (see bosh_client.py)."""

from .bosh_client import bosh_server

__all__ = ["bosh_server"]
