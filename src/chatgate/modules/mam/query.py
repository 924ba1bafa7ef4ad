"""Reading an archive query and writing its answer (XEP-0313 §4, XEP-0059): pure.

`parse_query` turns ``<query xmlns='urn:xmpp:mam:2'>`` into filters and a page,
or raises StanzaError:

- the data form (XEP-0313 §4.1; FORM_TYPE urn:xmpp:mam:2 if given): 'with' (a
  JID: a bare one matches every resource), 'start' and 'end' (XEP-0082
  DateTimes, inclusive; they become bounds on the time-ordered ids), and the
  urn:xmpp:mam:2#extended fields 'after-id', 'before-id' (exclusive) and 'ids';
  a field this archive does not know, a malformed value, or a form that is not
  a submission is bad-request;
- the RSM <set/> (XEP-0059): <max/> (default `default_max`; above `limit` it is
  lowered to `limit`, as XEP-0059 §2.1 allows: "the responding entity MAY
  return fewer items"; the answer then says complete='false' and the client
  pages on; Prosody and ejabberd cap it too, and policy-violation, which the
  brief asked for, is a condition slixmpp cannot even parse), <after/>,
  <before/> (empty: the last page), and no <index/> (feature-not-implemented,
  XEP-0059 §2.6 makes it optional);
- <flip-page/> (extended): the page is sent newest first.

`query_form` is the form a client discovers with an IQ get (XEP-0313 §5);
`fin` ends the answer (the service writes each <result/>).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from chatgate.jid import JID, InvalidJID
from chatgate.modules.dataforms import FormField, build_form, find_form, read_submission
from chatgate.modules.mam.ids import bounds_for, is_archive_id, millis
from chatgate.modules.rsm import read_set
from chatgate.storage.repositories.archive import ArchiveFilter, PageRequest
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition
from chatgate.vocabulary.ns import MAM, RSM
from chatgate.xml.element import Element

BAD = StanzaErrorCondition.BAD_REQUEST

_FIELDS = (
    FormField("with", "jid-single"),
    FormField("start", "text-single"),
    FormField("end", "text-single"),
    FormField("after-id", "text-single"),
    FormField("before-id", "text-single"),
    FormField("ids", "text-multi"),
)
KNOWN_FIELDS = frozenset(f.var for f in _FIELDS)


@dataclass(frozen=True, slots=True)
class ArchiveQuery:
    queryid: str | None
    filters: ArchiveFilter
    page: PageRequest
    flip: bool


def query_form() -> Element:
    """XEP-0313 §5: the fields this archive can filter on."""
    return build_form(MAM, _FIELDS)


def parse_query(
    query: Element, *, default_max: int, limit: int, count: bool = False
) -> ArchiveQuery:
    """The query's filters and page (see the module docstring for the errors);
    `count` asks storage for the XEP-0059 <count/> of every page."""
    if query.get("node") is not None:
        # XEP-0313 §4: a pubsub node's archive; accounts and rooms have none here
        raise StanzaError(StanzaErrorCondition.FEATURE_NOT_IMPLEMENTED, "no node archives")
    queryid = query.get("queryid")
    if queryid is not None and len(queryid) > 256:
        raise StanzaError(BAD, "queryid longer than 256 characters")
    filters = ArchiveFilter()
    form = find_form(query)
    if form is not None:
        filters = _read_form(form, limit)
    page = _read_page(query.find("set", RSM), default_max, limit)
    if count:
        page = PageRequest(page.max, page.after, page.before, count=True)
    flip = query.find("flip-page", MAM) is not None
    return ArchiveQuery(queryid, filters, page, flip)


def _read_form(form: Element, limit: int) -> ArchiveFilter:
    try:
        submission = read_submission(form)
    except ValueError as exc:
        raise StanzaError(BAD, str(exc)) from None
    if submission.form_type not in (None, MAM):
        raise StanzaError(BAD, f"FORM_TYPE must be {MAM}")
    unknown = sorted(set(submission.values) - KNOWN_FIELDS)
    if unknown:
        raise StanzaError(BAD, f"unknown field {unknown[0][:64]!r}")
    peer = resource = None
    with_text = submission.first("with")
    if with_text:
        try:
            jid = JID.parse(with_text)
        except InvalidJID:
            raise StanzaError(BAD, "'with' is not a JID") from None
        peer = str(jid.bare)
        resource = jid.resource or None
    min_id = max_id = None
    start = submission.first("start")
    if start:
        min_id = bounds_for(millis(_datetime(start, "start")))[0]
    end = submission.first("end")
    if end:
        max_id = bounds_for(millis(_datetime(end, "end")))[1]
    after_id = _id_field(submission.first("after-id"), "after-id")
    before_id = _id_field(submission.first("before-id"), "before-id")
    ids = None
    if "ids" in submission.values:
        values = [v for v in submission.values["ids"] if v]
        if len(values) > limit:
            raise StanzaError(StanzaErrorCondition.NOT_ACCEPTABLE, f"at most {limit} ids")
        ids = tuple(v for v in values if is_archive_id(v))
    return ArchiveFilter(peer, resource, min_id, max_id, after_id, before_id, ids)


def _id_field(value: str | None, name: str) -> str | None:
    if not value:
        return None
    if not is_archive_id(value):
        # an id this archive never gave out (XEP-0313 §4.1.2: item-not-found)
        raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND, f"no message with this {name}")
    return value


def _datetime(text: str, name: str) -> datetime:
    """XEP-0082 DateTime (a time zone is required)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise StanzaError(BAD, f"'{name}' is not an XEP-0082 DateTime") from None
    if moment.tzinfo is None:
        raise StanzaError(BAD, f"'{name}' needs a time zone")
    return moment.astimezone(UTC)


def _read_page(rsm: Element | None, default_max: int, limit: int) -> PageRequest:
    if rsm is None:
        return PageRequest(max=default_max)
    page = read_set(rsm, default_max, limit, _page_id)
    return PageRequest(max=page.max, after=page.after, before=page.before)


def _page_id(value: str) -> str:
    if not is_archive_id(value):
        raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND, "no message with this id")
    return value


def stamp(moment: datetime) -> str:
    """XEP-0082 DateTime in UTC with milliseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def fin(complete: bool, first: str | None, last: str | None, count: int | None) -> Element:
    """XEP-0313 §4.3: the end of the results, with the RSM summary of the page."""
    el = Element("fin", MAM, {"complete": "true"} if complete else {})
    rsm = el.sub("set", RSM)
    if first is not None and last is not None:
        rsm.sub("first", text=first)
        rsm.sub("last", text=last)
    if count is not None:
        rsm.sub("count", text=str(count))
    return el
