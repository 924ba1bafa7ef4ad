"""XEP-0059 result set management: what a request's `<set/>` asks for.

One reading for every pager (the archive's queries, the group chat service's room
list), so the rules hold alike: `<max/>` a non-negative number, lowered to the
pager's cap; `<index/>` not offered (`feature-not-implemented`, §2.4); `<after/>`
needs a cursor, `<before/>` may be empty (the last page, §2.5); not both at once.
Each pager checks its cursors itself (`cursor`), as only it knows what one is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition
from chatgate.xml.element import Element

BAD = StanzaErrorCondition.BAD_REQUEST


@dataclass(frozen=True, slots=True)
class SetRequest:
    """At most `max` items after `after`, or before `before` ("": the last page)."""

    max: int
    after: str | None = None
    before: str | None = None


def read_set(
    rsm: Element, default_max: int, cap: int, cursor: Callable[[str], str] = str
) -> SetRequest:
    """The page `rsm` (a `<set/>`) asks for; `cursor` checks a non-empty `<after/>`
    or `<before/>` (raising StanzaError) and returns it.  StanzaError for a set
    that breaks the rules above."""
    size = default_max
    max_el = rsm.find("max")
    if max_el is not None:
        try:
            size = int(max_el.text.strip())
        except ValueError:
            raise StanzaError(BAD, "<max/> is not a number") from None
        if size < 0:
            raise StanzaError(BAD, "<max/> is negative")
        size = min(size, cap)
    if rsm.find("index") is not None:
        raise StanzaError(StanzaErrorCondition.FEATURE_NOT_IMPLEMENTED, "paging by index")
    after = before = None
    after_el = rsm.find("after")
    if after_el is not None:
        after = after_el.text.strip()
        if not after:
            raise StanzaError(BAD, "<after/> needs a cursor")
        after = cursor(after)
    before_el = rsm.find("before")
    if before_el is not None:
        before = before_el.text.strip()
        if before:
            before = cursor(before)
    if after is not None and before is not None:
        raise StanzaError(BAD, "<after/> and <before/> together")
    return SetRequest(size, after, before)
