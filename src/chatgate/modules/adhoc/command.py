"""What an ad-hoc command is, and the answers the XEP-0050 exchange is made of.

A `Command` is a node (its identity on the wire), a human name, a rule saying
who may run it, zero or more form pages shown in order, and `finish`, which
does the work with every value submitted.  Commands know nothing of sessions,
actions or stanzas: `runner.py` drives the exchange.  A command with no pages
runs at once on `execute` (XEP-0050 §3.3, a single-stage command).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from chatgate.modules.dataforms import FormField, build_form
from chatgate.xml.element import Element

if TYPE_CHECKING:
    from chatgate.jid import JID
    from chatgate.xmpp.session import C2SSession

#: XEP-0050's namespace, also the disco node listing the commands (§2.1)

NoteType = Literal["info", "warn", "error"]


@dataclass(frozen=True, slots=True)
class Page:
    """One form shown to the requester (XEP-0004, FORM_TYPE `form_type`)."""

    form_type: str
    fields: tuple[FormField, ...]
    title: str | None = None
    instructions: str | None = None

    def form(self) -> Element:
        return build_form(
            self.form_type, self.fields, title=self.title, instructions=self.instructions
        )

    def field(self, var: str) -> FormField | None:
        return next((f for f in self.fields if f.var == var), None)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a finished command answers: a note (XEP-0050 §3.5 `<note/>`) and/or a
    result form (`type='result'`)."""

    note: str | None = None
    note_type: NoteType = "info"
    form: Element | None = None

    @staticmethod
    def error(text: str) -> Outcome:
        return Outcome(text, "error")


@dataclass(frozen=True, slots=True)
class Call:
    """Who runs a command, where: the requester's session and full JID, and the
    served domain the command was sent to."""

    session: C2SSession
    requester: JID
    host: str


@dataclass(frozen=True, slots=True)
class Values:
    """Every value submitted over a command's pages, by field var."""

    fields: dict[str, list[str]] = field(default_factory=dict)

    def first(self, var: str) -> str:
        """The field's first value stripped, "" when absent."""
        values = self.fields.get(var)
        return values[0].strip() if values else ""

    def all(self, var: str) -> list[str]:
        """The field's non-empty values, stripped (a jid-multi's JIDs)."""
        return [v.strip() for v in self.fields.get(var, ()) if v.strip()]


class Command(Protocol):
    @property
    def node(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def pages(self) -> Sequence[Page]: ...

    def allowed(self, requester: JID, host: str) -> bool:
        """May `requester` run this command on `host`?  Commands it may not run are
        not listed to it and answer `forbidden`."""
        ...

    def finish(self, call: Call, values: Values) -> Awaitable[Outcome]:
        """Do the work; refusals come back as an error `Outcome`, not an exception."""
        ...
