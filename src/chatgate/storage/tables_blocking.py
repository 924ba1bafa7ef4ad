"""The tables of blocklists (XEP-0191) and push registrations (XEP-0357),
on the same declarative base as `models.py` (which imports this module so that
the metadata knows them)."""

from __future__ import annotations
