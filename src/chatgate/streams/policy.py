"""Who may publish or play which stream: the rules, their index and the decision.

The media-server adapters turn a hook call into (subject, stream, action): the
*subject* is who the caller is as the login gate proved it (an account and its
groups, a valid token's claims, or nobody), the *stream* the name the media
server reported, the *action* ``publish`` or ``play``.  `RuleSet.decide`
answers with a `Decision`.  This module never awaits, never reads the clock and
never touches storage: the rules are handed in, already loaded.

Stream names
------------

A stream is named by its application and name joined with ``/``: ``live/alice``
(nginx-rtmp's ``app`` and ``name``, SRS's ``app`` and ``stream``, MediaMTX's
``path``).  A name may have more segments (``live/alice/cam2``: ffmpeg sends
everything after the application as the name) or only one (a MediaMTX path
``cam1``).  Names reach us from media servers, which pass on what their
clients typed, so a name is **validated, never repaired**: there is exactly one
accepted spelling of each stream, and text that is not one is denied
(``INVALID_STREAM``) before any rule is looked at, because the media server
will act on the spelling it reported, not on a cleaned-up one.  A valid name:

- has 1 to `MAX_NAME_BYTES` (255) UTF-8 bytes (nginx-rtmp keeps at most 255
  bytes of name and arguments) and at most `MAX_SEGMENTS` (8) segments;
- is segments separated by single ``/``: no empty segment, so no leading,
  trailing or doubled slash;
- has no segment starting with ``.``: no ``.``, no ``..``, no hidden file
  (nginx-rtmp writes stream names into HLS, DASH and recording paths);
- has ASCII letters, digits and ``- . _ ~ @ + :`` only, or non-ASCII letters,
  marks, digits, punctuation and symbols.  Refused among others: controls
  (NUL, CR, LF, DEL, C1), spaces, ``%`` (a name is delivered decoded once; a
  ``%`` left over is double encoding, ``live/%2e%2e/bob``, or a trick), the
  query-string characters ``? & = #`` (``live/alice&name=bob``), ``*`` (the
  pattern wildcard), ``\\``, quotes, angle brackets, and format characters
  (zero-width joiners, bidirectional overrides);
- is unchanged by Unicode NFKC normalization, so it is in NFC and has no
  compatibility characters: ``caf\\u0065\\u0301`` (NFD), fullwidth
  ``\\uff4c\\uff49\\uff56\\uff45`` and ``\\u2024\\u2024`` (which NFKC makes
  ``..``) are refused rather than being a second spelling of another name.

Comparison is exact and case-sensitive, as nginx-rtmp, SRS and MediaMTX compare
stream names.  (The Wowza module of seed ``000_…`` lowercases both sides; here
``live/Alice`` and ``live/alice`` are two streams, as they are on the media
server, and a rule for one does not grant the other.)

Patterns
--------

A rule's pattern is one of:

- an exact valid name: ``live/alice`` matches ``live/alice`` and nothing else
  (not ``live/alice/cam2``, not ``live/alicex``, not ``live/Alice``);
- a prefix: a valid name followed by ``/*``.  ``live/*`` matches every stream
  *under* ``live/``, at any depth: ``live/a`` and ``live/a/b``, but not ``live``
  itself and not ``lively/a`` (prefixes end on a segment boundary).  Any depth,
  because a name's further segments are chosen by the client (the player of
  ``rtmp://h/live/a/b`` sends the name ``a/b``): a grant on ``live/alice/*``
  is the whole of Alice's namespace;
- ``*``: every stream.

Any other use of ``*`` (``live/al*``, ``*/alice``, ``live/*/x``) is refused
with `InvalidPattern` when the rule is built: there is no glob and no regular
expression, so a pattern means what it says.

Grantees
--------

A rule grants ``publish``, ``play`` or both on a pattern to one grantee:

- ``user:alice@example.org``: that account (a bare JID, prepared as RFC 7622
  prepares it, so ``user:Alice@Example.ORG`` is the same account);
- ``group:staff``: every account in that group (the gate tells the groups);
- ``authenticated``: every account;
- ``token``: whoever holds a valid token for the stream and action.  The token
  layer (`chatgate.streams.tokens`) proves *which* stream and action a token
  was issued for; a rule says *whether* tokens are honoured on that pattern.
  Without a ``token`` rule, a token opens nothing;
- ``anonymous``: everyone, including callers with no credentials at all.  It
  makes a stream public for that action; accounts and token holders are
  admitted too (it would be absurd to refuse a logged-in viewer a public
  stream).  Note for adapters: a caller whose credentials were *wrong* is
  denied by the gate and never reaches the policy as anonymous.

How rules combine: any grant allows, nothing else does
------------------------------------------------------

A request is allowed when **at least one** rule whose pattern matches the stream
grants the action to a grantee that admits the subject.  No rule, no right:
an empty rule set denies everything (``NO_RULE``), and rules that match the
stream but admit someone else deny too (``NOT_GRANTED``).  There are no deny
rules and the order of the rules does not matter.

Why not "the most specific pattern wins" (nginx's ``location`` matching)?
Because then adding a rule can take rights away: with ``* publish
group:admins``, adding ``live/alice publish user:alice`` would lock the admins
out of ``live/alice``.  With grants that only add up, every rule added widens
access and every rule removed narrows it, and "who may publish ``live/alice``?"
is the union of the rules matching it: what MediaMTX's per-user permission
lists, Wowza's per-user allowed stream names and nginx-rtmp's ``allow publish``
lines do.  A private stream beside public ones goes under its own prefix
(``public/*`` played by ``anonymous``, ``private/*`` by ``group:staff``), as
nginx-rtmp operators use separate applications.

Examples, with these rules::

    live/*        play      anonymous             # every live stream is public to watch
    live/alice    publish   user:alice@example.org  # the seed's "allowed stream names"
    live/*        publish   group:broadcasters
    staff/*       play      group:staff
    staff/*       play      token                 # or with a token issued for it
    *             publish   group:admins

- anyone plays ``live/alice``; ``alice@example.org`` publishes it, so does any
  broadcaster and any admin; ``bob@example.org`` (no group) does not
  (``NOT_GRANTED``);
- ``staff/meeting`` plays for staff and for a token issued to play exactly
  ``staff/meeting``; a token for ``live/x`` is refused there (``TOKEN_MISMATCH``);
- nobody but admins publishes ``other/x`` and nobody plays it (``NO_RULE``);
- ``live/alice&name=bob`` and ``live/../bob`` are refused whoever asks
  (``INVALID_STREAM``).

`Decision.matched_rule` names one granting rule: the one with the most specific
pattern (exact, then longer prefixes, then ``*``), and among those on the same
pattern the earliest in the list, so logs say the same thing every time.

Cost
----

`RuleSet` indexes the rules once per action: a dictionary of exact names, a
dictionary of prefixes and the ``*`` rules, each pattern holding its grantees in
sets.  A decision validates the name (one regular expression for ASCII names),
looks the name up, then each of its parent prefixes (at most `MAX_SEGMENTS`
look-ups) and ``*``: the cost does not depend on the number of rules.  With
3,005 rules on the development machine: 0.6 to 1.2 microseconds for ASCII
names (1.5 when every prefix and ``*`` must be tried for a denial), 1.6 for a
short non-ASCII name (NFKC check); building the index takes about 3 ms.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from chatgate.jid import JID, InvalidJID
from chatgate.streams.tokens import StreamAction

__all__ = [
    "MAX_GROUP_LENGTH",
    "MAX_NAME_BYTES",
    "MAX_SEGMENTS",
    "Decision",
    "DecisionReason",
    "Grantee",
    "GranteeKind",
    "InvalidPattern",
    "InvalidStreamName",
    "Rule",
    "RuleSet",
    "Subject",
    "SubjectKind",
    "check_stream_name",
    "decide",
    "join_stream_name",
]

MAX_NAME_BYTES: Final = 255
"""Longest stream name, in UTF-8 bytes (nginx-rtmp keeps 255 bytes of name and arguments)."""
MAX_SEGMENTS: Final = 8
"""Most ``/``-separated segments in a stream name (bounds the prefix look-ups)."""
MAX_GROUP_LENGTH: Final = 256
"""Longest group name in a rule or a subject, in characters."""

# Segments of the ASCII fast path: a first character that is not ".", then any
# allowed ASCII character.  `_valid_unicode` applies the same rules to the rest.
_ASCII_EXTRA: Final = "-._~@+:"
_ASCII_SEGMENT: Final = r"[A-Za-z0-9_~@+:\-][A-Za-z0-9._~@+:\-]*"
_ASCII_NAME: Final = re.compile(rf"{_ASCII_SEGMENT}(?:/{_ASCII_SEGMENT})*")
_ASCII_ALLOWED: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789" + _ASCII_EXTRA
)
# Unicode general categories allowed beyond ASCII: letters, marks, numbers,
# punctuation, symbols.  Never: controls (Cc), format (Cf), surrogates (Cs),
# private use (Co), unassigned (Cn), separators (Zs, Zl, Zp).
_UNICODE_CATEGORIES: Final = frozenset("LMNPS")


class InvalidStreamName(ValueError):
    """A stream name that is not valid (the reason is the message); peer input."""


class InvalidPattern(ValueError):
    """A rule pattern that is not an exact name, ``prefix/*`` or ``*``; our configuration."""


def _name_error(text: object) -> str | None:
    """Why `text` is not a valid stream name, or None when it is (module docstring)."""
    if not isinstance(text, str):
        return "not text"
    if not text:
        return "empty"
    if text.isascii():
        if len(text) > MAX_NAME_BYTES:
            return f"longer than {MAX_NAME_BYTES} bytes"
        if _ASCII_NAME.fullmatch(text) is None:
            return _ascii_reason(text)
    else:
        error = _unicode_error(text)
        if error is not None:
            return error
    if text.count("/") >= MAX_SEGMENTS:
        return f"more than {MAX_SEGMENTS} segments"
    return None


def _ascii_reason(text: str) -> str:
    """The reason an ASCII name failed `_ASCII_NAME` (only on the denial path)."""
    for segment in text.split("/"):
        if not segment:
            return "empty segment"
        if segment[0] == ".":
            return "segment starts with '.'"
        for char in segment:
            if char not in _ASCII_ALLOWED:
                return f"character {char!r} not allowed"
    return "not a stream name"  # pragma: no cover - the regular expression says the same


def _unicode_error(text: str) -> str | None:
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return "lone surrogate"
    if size > MAX_NAME_BYTES:
        return f"longer than {MAX_NAME_BYTES} bytes"
    for segment in text.split("/"):
        if not segment:
            return "empty segment"
        if segment[0] == ".":
            return "segment starts with '.'"
        for char in segment:
            if char.isascii():
                if char not in _ASCII_ALLOWED:
                    return f"character {char!r} not allowed"
            elif unicodedata.category(char)[0] not in _UNICODE_CATEGORIES:
                return f"character U+{ord(char):04X} not allowed"
    if unicodedata.normalize("NFKC", text) != text:
        return "not in NFKC form"
    return None


def check_stream_name(text: str) -> str:
    """`text` itself when it is a valid stream name; raises `InvalidStreamName` with
    the reason otherwise.  Nothing is repaired: see "Stream names" above."""
    error = _name_error(text)
    if error is not None:
        raise InvalidStreamName(f"invalid stream name: {error}")
    return text


def join_stream_name(application: str, name: str) -> str:
    """``application/name``, validated: how an adapter names the stream of an
    nginx-rtmp (``app``, ``name``) or SRS (``app``, ``stream``) call.  Raises
    `InvalidStreamName`; an empty application or name gives an empty segment."""
    return check_stream_name(f"{application}/{name}")


# -- rules ---------------------------------------------------------------------


class GranteeKind(enum.Enum):
    """Whom a rule admits (module docstring, "Grantees")."""

    USER = "user"
    GROUP = "group"
    AUTHENTICATED = "authenticated"
    TOKEN = "token"
    ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Grantee:
    """One grantee; `name` is the prepared bare JID of a USER, the group of a GROUP,
    and empty otherwise.  Build with `Grantee.parse` or the class methods, which
    validate; the constructor trusts its arguments."""

    kind: GranteeKind
    name: str = ""

    @classmethod
    def user(cls, jid: str) -> Grantee:
        """The account ``jid`` (``localpart@domain``); `ValueError` unless a bare JID
        with a localpart."""
        try:
            parsed = JID.parse(jid)
        except InvalidJID as exc:
            raise ValueError(f"user grantee {jid!r}: {exc}") from None
        if not parsed.local or parsed.resource:
            raise ValueError(f"user grantee must be localpart@domain, not {jid!r}")
        return cls(GranteeKind.USER, str(parsed))

    @classmethod
    def group(cls, name: str) -> Grantee:
        """The group ``name`` (case-sensitive); `ValueError` if empty, too long or
        holding control characters."""
        return cls(GranteeKind.GROUP, _check_group(name))

    @classmethod
    def parse(cls, text: str) -> Grantee:
        """``user:JID``, ``group:NAME``, ``authenticated``, ``token`` or ``anonymous``;
        `ValueError` for anything else."""
        kind, sep, rest = text.partition(":")
        if sep:
            if kind == "user":
                return cls.user(rest)
            if kind == "group":
                return cls.group(rest)
        elif text in _SIMPLE_GRANTEES:
            return _SIMPLE_GRANTEES[text]
        raise ValueError(
            f"a grantee is user:JID, group:NAME, authenticated, token or anonymous, not {text!r}"
        )

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.name}" if self.name else self.kind.value


_SIMPLE_GRANTEES: Final = {
    kind.value: Grantee(kind)
    for kind in (GranteeKind.AUTHENTICATED, GranteeKind.TOKEN, GranteeKind.ANONYMOUS)
}


def _check_group(name: object) -> str:
    if (
        not isinstance(name, str)
        or not name
        or len(name) > MAX_GROUP_LENGTH
        or not name.isprintable()
        or name != name.strip()
    ):
        raise ValueError(
            f"a group name is 1 to {MAX_GROUP_LENGTH} printable characters, not starting "
            f"or ending with a space, not {name!r}"
        )
    return name


@dataclass(frozen=True, slots=True)
class _Pattern:
    kind: str  # "exact", "prefix", "all"
    key: str  # the name, the prefix without "/*", or "" for all


def _parse_pattern(text: str) -> _Pattern:
    if text == "*":
        return _Pattern("all", "")
    base = text[:-2] if text.endswith("/*") else text
    error = _name_error(base)
    if error is not None:
        raise InvalidPattern(
            f"a pattern is a stream name, NAME/* or *, not {text!r}: {error}"
        ) from None
    if base is text:
        return _Pattern("exact", base)
    if base.count("/") + 1 >= MAX_SEGMENTS:
        raise InvalidPattern(f"prefix {text!r} leaves no room under {MAX_SEGMENTS} segments")
    return _Pattern("prefix", base)


@dataclass(frozen=True, slots=True)
class Rule:
    """Grants `actions` on streams matching `pattern` to `grantee`.

    Raises `InvalidPattern` for a bad pattern and `ValueError` for no or unknown
    actions, at construction: a rule set that loaded is a rule set that means
    what it says.  ``str(rule)`` and `Rule.parse` are each other's inverse
    (``"publish,play live/* group:staff"``), for configuration and export."""

    pattern: str
    actions: frozenset[StreamAction]
    grantee: Grantee
    _compiled: _Pattern = field(init=False, repr=False, compare=False)

    def __init__(
        self, pattern: str, actions: Iterable[StreamAction | str], grantee: Grantee | str
    ) -> None:
        try:
            acts = frozenset(StreamAction(a) for a in actions)
        except ValueError:
            raise ValueError(f"actions are 'publish' and 'play', not {actions!r}") from None
        if not acts:
            raise ValueError("a rule grants at least one action")
        if isinstance(grantee, str):
            grantee = Grantee.parse(grantee)
        object.__setattr__(self, "pattern", pattern)
        object.__setattr__(self, "actions", acts)
        object.__setattr__(self, "grantee", grantee)
        object.__setattr__(self, "_compiled", _parse_pattern(pattern))

    @classmethod
    def parse(cls, text: str) -> Rule:
        """``ACTIONS PATTERN GRANTEE``, ACTIONS a comma-separated list; `ValueError`."""
        parts = text.strip().split(None, 2)  # a group name may hold spaces
        if len(parts) != 3:
            raise ValueError(f"a rule is 'ACTIONS PATTERN GRANTEE', not {text!r}")
        return cls(parts[1], parts[0].split(","), parts[2])

    def __str__(self) -> str:
        acts = ",".join(a.value for a in StreamAction if a in self.actions)
        return f"{acts} {self.pattern} {self.grantee}"


# -- subjects ------------------------------------------------------------------


class SubjectKind(enum.Enum):
    """What the gate proved about the caller."""

    ANONYMOUS = "anonymous"  # no credentials at all
    ACCOUNT = "account"  # an account's password or stream key
    TOKEN = "token"  # a token valid for `token_stream` and `token_action`


@dataclass(frozen=True, slots=True)
class Subject:
    """Who asks, as proven by the login gate.  Build with the class methods: they
    prepare the account name as rules prepare theirs; a hand-built subject with
    an unprepared name simply matches no user rule (fails closed)."""

    kind: SubjectKind
    account: str | None = None
    groups: frozenset[str] = frozenset()
    token_stream: str | None = None
    token_action: StreamAction | None = None
    token_user: str | None = None

    @classmethod
    def anonymous(cls) -> Subject:
        return _ANONYMOUS_SUBJECT

    @classmethod
    def for_account(cls, jid: str, groups: Iterable[str] = ()) -> Subject:
        """An account (``localpart@domain``) and the groups it belongs to;
        `ValueError` for an invalid JID or group."""
        user = Grantee.user(jid).name
        return cls(SubjectKind.ACCOUNT, user, frozenset(_check_group(group) for group in groups))

    @classmethod
    def token_bearer(
        cls, stream: str, action: StreamAction | str, user: str | None = None
    ) -> Subject:
        """The holder of a token that `tokens.verify` found VALID for ``stream`` and
        ``action``; ``user`` is the verdict's user, for the log only: a token
        holder is admitted by ``token`` and ``anonymous`` rules, never as the
        user it was issued to."""
        return cls(
            SubjectKind.TOKEN,
            token_stream=stream,
            token_action=StreamAction(action),
            token_user=user,
        )


_ANONYMOUS_SUBJECT: Final = Subject(SubjectKind.ANONYMOUS)


# -- decisions -----------------------------------------------------------------


class DecisionReason(enum.Enum):
    """Why a request was allowed or denied; a few fixed values, fit for counters."""

    GRANTED = "granted"
    NO_RULE = "no rule for this stream and action"
    NOT_GRANTED = "no rule admits this caller"
    INVALID_STREAM = "invalid stream name"
    INVALID_ACTION = "invalid action"
    TOKEN_MISMATCH = "token issued for another stream or action"


@dataclass(frozen=True, slots=True)
class Decision:
    """`decide`'s answer; `matched_rule` is the granting rule (see "How rules
    combine"), None for a denial."""

    allowed: bool
    reason: DecisionReason
    matched_rule: Rule | None = None


_NO_RULE: Final = Decision(False, DecisionReason.NO_RULE)
_NOT_GRANTED: Final = Decision(False, DecisionReason.NOT_GRANTED)
_INVALID_STREAM: Final = Decision(False, DecisionReason.INVALID_STREAM)
_INVALID_ACTION: Final = Decision(False, DecisionReason.INVALID_ACTION)
_TOKEN_MISMATCH: Final = Decision(False, DecisionReason.TOKEN_MISMATCH)


class _Grants:
    """The grantees of one pattern for one action; each maps to the granting
    Decision of its earliest rule (decisions are built once, here)."""

    __slots__ = ("anonymous", "authenticated", "groups", "token", "users")

    def __init__(self) -> None:
        self.users: dict[str, tuple[int, Decision]] = {}
        self.groups: dict[str, tuple[int, Decision]] = {}
        self.authenticated: tuple[int, Decision] | None = None
        self.token: tuple[int, Decision] | None = None
        self.anonymous: tuple[int, Decision] | None = None

    def add(self, index: int, rule: Rule) -> None:
        entry = (index, Decision(True, DecisionReason.GRANTED, rule))
        grantee = rule.grantee
        kind = grantee.kind
        if kind is GranteeKind.USER:
            self.users.setdefault(grantee.name, entry)
        elif kind is GranteeKind.GROUP:
            self.groups.setdefault(grantee.name, entry)
        elif kind is GranteeKind.AUTHENTICATED:
            self.authenticated = self.authenticated or entry
        elif kind is GranteeKind.TOKEN:
            self.token = self.token or entry
        else:
            self.anonymous = self.anonymous or entry

    def admit(self, subject: Subject) -> Decision | None:
        """The earliest rule of this pattern admitting `subject`, or None."""
        best = self.anonymous
        kind = subject.kind
        if kind is SubjectKind.ACCOUNT:
            for candidate in (self.users.get(subject.account or ""), self.authenticated):
                if candidate is not None and (best is None or candidate[0] < best[0]):
                    best = candidate
            if self.groups:
                for group in subject.groups:
                    candidate = self.groups.get(group)
                    if candidate is not None and (best is None or candidate[0] < best[0]):
                        best = candidate
        elif kind is SubjectKind.TOKEN:
            candidate = self.token
            if candidate is not None and (best is None or candidate[0] < best[0]):
                best = candidate
        return None if best is None else best[1]


class _ActionIndex:
    __slots__ = ("all", "exact", "prefixes")

    def __init__(self) -> None:
        self.exact: dict[str, _Grants] = {}
        self.prefixes: dict[str, _Grants] = {}
        self.all: _Grants | None = None


class RuleSet:
    """A list of rules indexed for `decide`: built once (when the rules are loaded
    or changed), then shared read-only.  The cost of a decision does not grow with
    the number of rules (module docstring, "Cost")."""

    __slots__ = ("_index", "rules")

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self._index: dict[str, _ActionIndex] = {
            action.value: _ActionIndex() for action in StreamAction
        }
        for position, rule in enumerate(self.rules):
            pattern = rule._compiled
            for action in rule.actions:
                index = self._index[action]
                if pattern.kind == "exact":
                    grants = index.exact.setdefault(pattern.key, _Grants())
                elif pattern.kind == "prefix":
                    grants = index.prefixes.setdefault(pattern.key, _Grants())
                else:
                    if index.all is None:
                        index.all = _Grants()
                    grants = index.all
                grants.add(position, rule)

    def __len__(self) -> int:
        return len(self.rules)

    def decide(self, subject: Subject, stream: str, action: StreamAction | str) -> Decision:
        """May `subject` do `action` on `stream`?  Never raises for any stream or
        action text: invalid ones are denied (fail closed)."""
        index = self._index.get(action)
        if index is None:
            return _INVALID_ACTION
        if _name_error(stream) is not None:
            return _INVALID_STREAM
        if subject.kind is SubjectKind.TOKEN and (
            subject.token_stream != stream or subject.token_action != action
        ):
            return _TOKEN_MISMATCH
        matched = False
        grants = index.exact.get(stream)
        if grants is not None:
            matched = True
            decision = grants.admit(subject)
            if decision is not None:
                return decision
        prefixes = index.prefixes
        if prefixes:
            prefix = stream
            cut = prefix.rfind("/")
            while cut > 0:
                prefix = prefix[:cut]
                grants = prefixes.get(prefix)
                if grants is not None:
                    matched = True
                    decision = grants.admit(subject)
                    if decision is not None:
                        return decision
                cut = prefix.rfind("/")
        grants = index.all
        if grants is not None:
            matched = True
            decision = grants.admit(subject)
            if decision is not None:
                return decision
        return _NOT_GRANTED if matched else _NO_RULE


def decide(rules: RuleSet, subject: Subject, stream: str, action: StreamAction | str) -> Decision:
    """`rules.decide(subject, stream, action)`."""
    return rules.decide(subject, stream, action)
