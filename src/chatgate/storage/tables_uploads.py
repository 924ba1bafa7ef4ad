"""The tables of HTTP uploads (XEP-0363),
on the same declarative base as `models.py` (which imports this module so that
the metadata knows them)."""

from __future__ import annotations
