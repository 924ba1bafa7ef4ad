"""BOSH session ids (bosh_session.new_sid) come from the batched random pool: 144 bits
each, URL-safe, never repeated."""

from __future__ import annotations

import re

from chatgate.http.bosh_session import new_sid


def test_sids_are_24_url_safe_characters_and_never_repeat() -> None:
    sids = [new_sid() for _ in range(20_000)]  # several refills of the 4 KiB pool
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{24}", sid) for sid in sids)
    assert len(set(sids)) == len(sids)
