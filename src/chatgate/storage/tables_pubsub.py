"""The tables of PEP nodes and items, private XML (XEP-0060/0163/0049),
on the same declarative base as `models.py` (which imports this module so that
the metadata knows them)."""

from __future__ import annotations
