"""XEP-0133 service administration: the commands an XMPP administrator runs.

Every command works on the accounts of the served domain it was sent to, and
only through the operations the REST API and the console use
(`chatgate.administration`): account changes go through the account service
(policy, credential caches, a deletion's cascade), sessions end through the
session directory, messages go through the router.  Their refusals
(`OperationError`) come back as an error note, worded as the API words them.

Who is an administrator: the bare JIDs of `[modules.adhoc] admins`; an
administrator may run these on every served domain.  Everybody else gets
``forbidden`` and never sees them listed.

Online figures and the announcement read the router's table
(`SessionDirectory.table`): this process's sessions and, with the cluster
layer, a stand-in for each session on another node, so they cover the whole
cluster; the announcement's copies for other nodes are forwarded there.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chatgate.administration import accounts as account_ops
from chatgate.administration import sessions as session_ops
from chatgate.administration.errors import NotFound, OperationError
from chatgate.jid import JID, InvalidJID
from chatgate.modules.adhoc.command import Call, Outcome, Page, Values
from chatgate.modules.dataforms import FormField, build_form
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StreamErrorCondition
from chatgate.xml.element import Element

if TYPE_CHECKING:
    from chatgate.context import ServerContext

#: XEP-0133 §4: FORM_TYPE of every form, prefix of every node
ADMIN = "http://jabber.org/protocol/admin"
#: most JIDs one delete-user or end-user-session may name
MAX_JIDS = 100
#: most JIDs an online-users list answers with
MAX_LISTED = 1000
#: most characters of an announcement
MAX_ANNOUNCEMENT = 65_536
#: what a client whose session an administrator ended reads in its stream error
ENDED_TEXT = "session ended by an administrator"


@dataclass(frozen=True, slots=True)
class AdminCommand:
    """One XEP-0133 command: `node` is ``ADMIN#<name>``."""

    node: str
    name: str
    pages: Sequence[Page]
    admins: frozenset[str]
    work: Callable[[Call, Values], Awaitable[Outcome]]

    def allowed(self, requester: JID, host: str) -> bool:
        return str(requester.bare) in self.admins

    def finish(self, call: Call, values: Values) -> Awaitable[Outcome]:
        return self.work(call, values)


def _page(*fields: FormField, title: str, instructions: str | None = None) -> tuple[Page]:
    return (Page(ADMIN, tuple(fields), title, instructions),)


_ACCOUNT = FormField("accountjid", "jid-single", "The Jabber ID of the account", required=True)
_ACCOUNTS = FormField("accountjids", "jid-multi", "The Jabber ID(s)", required=True)
_PASSWORD = FormField("password", "text-private", "The password", required=True)


class AdminCommands:
    """The XEP-0133 commands of a server, for the administrators `admins`."""

    def __init__(self, ctx: ServerContext, admins: frozenset[str]) -> None:
        self.ctx = ctx
        self.admins = admins

    def commands(self) -> list[AdminCommand]:
        def command(
            name: str,
            label: str,
            pages: Sequence[Page],
            work: Callable[[Call, Values], Awaitable[Outcome]],
        ) -> AdminCommand:
            return AdminCommand(f"{ADMIN}#{name}", label, pages, self.admins, work)

        return [
            command(
                "add-user",
                "Add a User",
                _page(
                    _ACCOUNT,
                    _PASSWORD,
                    FormField("password-verify", "text-private", "Retype password", required=True),
                    title="Adding a User",
                ),
                self.add_user,
            ),
            command(
                "delete-user",
                "Delete a User",
                _page(_ACCOUNTS, title="Deleting a User"),
                self.delete_users,
            ),
            command(
                "end-user-session",
                "End a User Session",
                _page(
                    _ACCOUNTS,
                    title="Ending a User Session",
                    instructions="A bare JID ends every session of the account, a full JID one.",
                ),
                self.end_sessions,
            ),
            command(
                "change-user-password",
                "Change User Password",
                _page(_ACCOUNT, _PASSWORD, title="Changing a User Password"),
                self.change_password,
            ),
            command(
                "get-registered-users-num",
                "Get Number of Registered Users",
                (),
                self.registered_count,
            ),
            command("get-online-users-num", "Get Number of Online Users", (), self.online_count),
            command("get-online-users-list", "Get List of Online Users", (), self.online_list),
            command(
                "announce",
                "Send Announcement to Online Users",
                _page(
                    FormField("subject", "text-single", "Subject"),
                    FormField("announcement", "text-multi", "Announcement", required=True),
                    title="Making an Announcement",
                ),
                self.announce,
            ),
        ]

    # ------------------------------------------------------------ accounts

    def _account(self, call: Call, text: str) -> JID:
        """The bare JID of an account on the command's host; OperationError otherwise."""
        try:
            jid = JID.parse(text)
        except InvalidJID as exc:
            raise OperationError(f"invalid JID {text!r}: {exc}") from None
        if not jid.local or jid.resource:
            raise OperationError(f"{text} is not the bare JID of an account")
        if jid.domain != call.host:
            raise OperationError(f"{text} is not an account of {call.host}")
        return jid

    async def add_user(self, call: Call, values: Values) -> Outcome:
        password = values.first("password")
        if password != values.first("password-verify"):
            return Outcome.error("the passwords do not match")
        try:
            jid = self._account(call, values.first("accountjid"))
            view = await account_ops.create_account(
                self.ctx, jid.local, password, domain=jid.domain
            )
        except OperationError as exc:
            return Outcome.error(exc.message)
        return Outcome(f"created {view.jid}")

    async def change_password(self, call: Call, values: Values) -> Outcome:
        try:
            jid = self._account(call, values.first("accountjid"))
            await account_ops.change_password(self.ctx, str(jid), values.first("password"))
        except OperationError as exc:
            return Outcome.error(exc.message)
        return Outcome(f"changed the password of {jid}")

    async def delete_users(self, call: Call, values: Values) -> Outcome:
        return await self._each(call, values, self._delete)

    async def _delete(self, call: Call, text: str) -> str:
        jid = self._account(call, text)
        await account_ops.delete_account(self.ctx, str(jid))
        return f"deleted {jid}"

    # ------------------------------------------------------------ sessions

    async def end_sessions(self, call: Call, values: Values) -> Outcome:
        return await self._each(call, values, self._end)

    async def _end(self, call: Call, text: str) -> str:
        try:
            jid = JID.parse(text)
        except InvalidJID as exc:
            raise OperationError(f"invalid JID {text!r}: {exc}") from None
        self._account(call, str(jid.bare))
        if jid.resource:
            try:
                session_ops.kick(self.ctx, str(jid), ENDED_TEXT)
            except NotFound:
                # Bound on another node of a cluster: its stand-in in the router's
                # table forwards the close there.
                bare = self.ctx.router.directory.table.get(str(jid.bare), {})
                elsewhere = bare.get(jid.resource)
                if elsewhere is None:
                    raise
                elsewhere.close(StreamErrorCondition.POLICY_VIOLATION, ENDED_TEXT)
            return f"ended {jid}"
        # Every session of the account, on every node (the directory's close).
        count = self.ctx.router.directory.close_sessions(
            str(jid), StreamErrorCondition.POLICY_VIOLATION, ENDED_TEXT
        )
        if not count:
            raise NotFound(f"{jid} has no session here")
        return f"ended {count} session(s) of {jid}"

    async def _each(
        self, call: Call, values: Values, one: Callable[[Call, str], Awaitable[str]]
    ) -> Outcome:
        """Run `one` on each JID of `accountjids`; one line per JID, an error note
        when any failed."""
        jids = values.all("accountjids")
        if len(jids) > MAX_JIDS:
            return Outcome.error(f"name at most {MAX_JIDS} JIDs at once")
        lines, failed = [], False
        for text in dict.fromkeys(jids):
            try:
                lines.append(await one(call, text))
            except OperationError as exc:
                lines.append(exc.message)
                failed = True
        return Outcome("\n".join(lines), "error" if failed else "info")

    # ------------------------------------------------------------ figures

    def _online(self, host: str) -> list[str]:
        """Bare JIDs of the host's accounts with a session (on any node)."""
        suffix = "@" + host
        return sorted(bare for bare in self.ctx.router.directory.table if bare.endswith(suffix))

    async def registered_count(self, call: Call, values: Values) -> Outcome:
        count = await self.ctx.db.accounts.count(call.host)
        return Outcome(form=_result(FormField("registeredusersnum", values=(str(count),))))

    async def online_count(self, call: Call, values: Values) -> Outcome:
        count = len(self._online(call.host))
        return Outcome(form=_result(FormField("onlineusersnum", values=(str(count),))))

    async def online_list(self, call: Call, values: Values) -> Outcome:
        online = self._online(call.host)
        listed = tuple(online[:MAX_LISTED])
        note = f"the first {MAX_LISTED} of {len(online)}" if len(online) > MAX_LISTED else None
        return Outcome(note, form=_result(FormField("onlineuserjids", "jid-multi", values=listed)))

    # ------------------------------------------------------------ announcements

    async def announce(self, call: Call, values: Values) -> Outcome:
        """A headline from the host to every available resource of its online
        accounts (XEP-0133 §4.23), never stored offline."""
        text = "\n".join(values.fields.get("announcement", ()))
        if len(text) > MAX_ANNOUNCEMENT:
            return Outcome.error(f"an announcement has at most {MAX_ANNOUNCEMENT} characters")
        subject = values.first("subject")
        online = self._online(call.host)
        for index, bare in enumerate(online):
            message = Element(
                "message",
                ns.CLIENT,
                {"from": call.host, "to": bare, "type": "headline", "id": os.urandom(8).hex()},
            )
            if subject:
                message.sub("subject", text=subject)
            message.sub("body", text=text)
            self.ctx.router.deliver_to_available(bare, message)
            if index % 500 == 499:
                await asyncio.sleep(0)  # other clients get a turn during a big fan-out
        return Outcome(f"announced to {len(online)} online account(s)")


def _result(*fields: FormField) -> Element:
    return build_form(ADMIN, fields, form="result")
