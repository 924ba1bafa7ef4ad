"""The tables of the message archive (XEP-0313),
on the same declarative base as `models.py` (which imports this module so that
the metadata knows them)."""

from __future__ import annotations
