"""The service's room list (XEP-0045 §6.3 disco#items) in pages: XEP-0059 result
set management (`<set><max/><after/><before/></set>`).

Rooms are listed in the order of their JIDs, and a page's cursors are room JIDs
(`<first>`, `<last>`), so a page stays right while rooms come and go.  An answer
lists at most `room_list_max` rooms (an RSM `<max/>` above it is lowered to it);
a request without RSM gets the first that many, and when rooms were left out the
answer says so with a `<set/>` (its `<count/>` and `<last/>`), so that a client
that knows RSM can go on.  Paging by `<index/>` is not offered
(`feature-not-implemented`, XEP-0059 §2.4).

In a cluster every node cuts its own window of its rooms (`window`), which holds
the rooms the page needs from it, and the asking node merges them (`merge`):
only the page's worth of rooms travels, whatever the number of rooms.

Must not: look at rooms (the callers give (JID, name) pairs), deliver.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

from chatgate.modules.rsm import read_set
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition
from chatgate.xml.element import Element

E = StanzaErrorCondition
#: characters of an <after/> or <before/> cursor at most (a room JID's bound)
MAX_CURSOR = 3071


@dataclass(frozen=True, slots=True)
class PageRequest:
    """What a client asked: at most `max` rooms after the room `after`, or before
    `before` ("" is the end: the last page); `rsm` says whether it asked at all."""

    max: int
    after: str | None = None
    before: str | None = None
    rsm: bool = False


@dataclass(frozen=True, slots=True)
class Window:
    """One node's share of a page: its rooms the page may need, how many public
    rooms it has, and how many of them lie beyond the cursor (at or before
    `after`, or at or after `before`)."""

    rooms: list[tuple[str, str]]
    count: int
    skipped: int


def read_request(query: Element, cap: int) -> PageRequest:
    """The page a disco#items query asks for (StanzaError for a malformed `<set/>`)."""
    rsm = query.find("set", ns.RSM)
    if rsm is None:
        return PageRequest(max=cap)
    page = read_set(rsm, cap, cap, _room_cursor)
    return PageRequest(max=page.max, after=page.after, before=page.before, rsm=True)


def _room_cursor(cursor: str) -> str:
    if len(cursor) > MAX_CURSOR:
        raise StanzaError(E.BAD_REQUEST, "that cursor is no room")
    return cursor


def window(rooms: Iterable[tuple[str, str]], request: PageRequest) -> Window:
    """This node's share of the page: `rooms` (JID, name), public ones, any order."""
    ordered = sorted(rooms)
    jids = [jid for jid, _name in ordered]
    if request.before is not None:
        end = bisect.bisect_left(jids, request.before) if request.before else len(jids)
        start = max(0, end - request.max)
        return Window(ordered[start:end], len(ordered), len(ordered) - end)
    start = bisect.bisect_right(jids, request.after) if request.after is not None else 0
    return Window(ordered[start : start + request.max], len(ordered), start)


@dataclass(frozen=True, slots=True)
class Page:
    rooms: list[tuple[str, str]]
    count: int
    #: the position of the page's first room in the whole list
    index: int


def merge(windows: Iterable[Window], request: PageRequest) -> Page:
    """The page from every node's window (their rooms never overlap: each room has
    one owner; a room listed twice counts once in the page)."""
    windows = list(windows)
    names: dict[str, str] = {}
    for w in windows:
        for jid, name in w.rooms:
            names.setdefault(jid, name)
    ordered = sorted(names.items())
    count = sum(w.count for w in windows)
    skipped = sum(w.skipped for w in windows)
    if request.before is not None:
        page = ordered[max(0, len(ordered) - request.max) :]
        return Page(page, count, max(0, count - skipped - len(page)))
    return Page(ordered[: request.max], count, skipped)


def answer(page: Page, request: PageRequest) -> Element:
    """The disco#items query of the page, with its `<set/>` when one was asked for
    or rooms were left out."""
    query = Element("query", ns.DISCO_ITEMS)
    for jid, name in page.rooms:
        attrs = {"jid": jid}
        if name:
            attrs["name"] = name
        query.sub("item", attrs=attrs)
    if request.rsm or len(page.rooms) < page.count:
        rsm = query.sub("set", ns.RSM)
        if page.rooms:
            rsm.sub("first", attrs={"index": str(page.index)}, text=page.rooms[0][0])
            rsm.sub("last", text=page.rooms[-1][0])
        rsm.sub("count", text=str(page.count))
    return query
