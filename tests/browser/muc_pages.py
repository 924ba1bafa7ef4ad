"""converse.js group chat, driven the way a person uses it: one `ChatPage` per user.

Every step goes through converse's own UI (the login form, the "Add groupchat" modal,
the participants' "Invite someone" modal, the invitation's confirmation, the nickname
form, the message box); every wait is on what the page shows.  Each page also records
the XMPP-over-WebSocket frames it sends and receives (`Frames`), so a test can tell
*how* something it sees reached the page (a live groupchat message, room history on
join, or a MAM result).

The selectors are converse.js 14's (`web/assets.lock.json`); they are kept here, in one
place, for when converse is upgraded.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

CLIENT = "{jabber:client}"
MAM = "urn:xmpp:mam:2"
MUC = "http://jabber.org/protocol/muc"
MUC_USER = MUC + "#user"
CONFERENCE = "jabber:x:conference"


@dataclass
class Frames:
    """The WebSocket frames one page sent (`sent`) and received (`received`), as text."""

    sent: list[str] = field(default_factory=list)
    received: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        def on_websocket(ws: Any) -> None:
            ws.on("framesent", lambda payload: self.sent.append(_text(payload)))
            ws.on("framereceived", lambda payload: self.received.append(_text(payload)))

        page.on("websocket", on_websocket)

    def text(self) -> str:
        out = [f">> {f}" for f in self.sent] + [f"<< {f}" for f in self.received]
        return "\n".join(out) + "\n"


def _text(payload: str | bytes) -> str:
    return payload if isinstance(payload, str) else payload.decode("utf-8", "replace")


def parse(frame: str) -> ET.Element | None:
    """One frame's element (RFC 7395: a frame holds exactly one), or None if it is not XML."""
    try:
        return ET.fromstring(frame)
    except ET.ParseError:
        return None


def bodies(element: ET.Element) -> Iterator[str]:
    """The text of every `<body/>` anywhere in `element`."""
    for body in element.iter(f"{CLIENT}body"):
        yield body.text or ""


@dataclass
class ChatPage:
    """One user's converse.js page (`page`, a Playwright page) and its frames."""

    name: str
    page: Any
    frames: Frames

    @property
    def room(self) -> Any:
        """The open groupchat's view."""
        return self.page.locator("converse-muc")

    async def login(self, url: str, password: str) -> None:
        """Log in through converse's login form; done when the contact list shows."""
        await self.page.goto(url)
        form = self.page.locator("converse-root form#converse-login")
        await form.locator("input[name=jid]").fill(self.name)
        await form.locator("input[name=password]").fill(password)
        await form.locator("[type=submit]").click()
        await self.page.locator("converse-roster").wait_for()

    async def open_room(self, room_jid: str, nick: str) -> None:
        """Groupchats menu, "Add groupchat": the room's address and a nickname, "Join".
        Converse creates the room when it does not exist (an instant room, with
        converse's default `muc_instant_rooms`); done when the message box shows."""
        await self.page.locator("converse-rooms-list button.dropdown-toggle").click()
        await self.page.locator("a.show-add-muc-modal").click()
        form = self.page.locator("form.add-chatroom")
        await form.locator("input[name=chatroom]").fill(room_jid)
        await form.locator("input[name=nickname]").fill(nick)
        await form.locator("input[type=submit]").click()
        await self.room.locator("textarea.chat-textarea").wait_for()

    async def say(self, text: str) -> None:
        """Type `text` in the room's message box and press Enter."""
        box = self.room.locator("textarea.chat-textarea")
        await box.fill(text)
        await box.press("Enter")

    def message(self, text: str) -> Any:
        """A message in the room's history pane with this text."""
        return self.room.locator(".chat-msg__text", has_text=text)

    async def messages(self) -> list[str]:
        """The texts of the messages the room's pane shows, top to bottom."""
        texts = await self.room.locator(".chat-msg__text").all_text_contents()
        return [t.strip() for t in texts]

    def occupant(self, nick: str) -> Any:
        """An occupant in the room's participants list."""
        return self.room.locator("converse-muc-sidebar .occupant-nick", has_text=nick)

    async def invite(self, jid: str, reason: str) -> None:
        """Participants menu, "Invite someone": converse sends a XEP-0249 direct invitation."""
        await self.room.locator("converse-muc-sidebar button.dropdown-toggle").click()
        await self.room.locator("a.open-invite-modal").click()
        form = self.page.locator("converse-muc-invite-modal form")
        await form.locator("input[name=invitee_jids]").fill(jid)
        await form.locator("textarea[name=reason]").fill(reason)
        await form.locator("input[type=submit]").click()

    async def accept_invitation(self, room_jid: str, reason: str, nick: str) -> None:
        """Accept the invitation converse asks about, then choose a nickname (converse
        asks for one when the account has none registered with the room)."""
        dialog = self.page.locator("converse-confirm-modal")
        await dialog.get_by_text(room_jid).wait_for()
        await dialog.get_by_text(reason).wait_for()
        await dialog.locator(".btn-primary").click()
        form = self.room.locator("converse-muc-nickname-form form")
        await form.locator("input[name=nick]").fill(nick)
        await form.locator("input[type=submit]").click()
        await self.room.locator("textarea.chat-textarea").wait_for()
