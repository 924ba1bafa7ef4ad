"""The tables of persistent rooms (XEP-0045),
on the same declarative base as `models.py` (which imports this module so that
the metadata knows them)."""

from __future__ import annotations
