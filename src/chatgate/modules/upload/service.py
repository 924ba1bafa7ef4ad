"""The upload service on ``upload.<host>``: disco, and handing out slots (XEP-0363).

Every stanza a client sends to the service's domain comes here (a
`ServiceDomain`).  Slot requests are checked (`slots.read_request`), then
reserved in the database under the account's quota and rate in one
transaction (`UploadRepository.reserve`), so the limits hold across server
processes.  Only accounts of the host the service belongs to may ask.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from chatgate.jid import JID
from chatgate.modules.dataforms import FormField, build_form
from chatgate.modules.upload.slots import (
    UPLOAD,
    SlotError,
    SlotSigner,
    get_url,
    new_token,
    put_url,
    read_request,
    retry_error,
    slot_element,
)
from chatgate.storage.errors import AccountNotFound
from chatgate.storage.repositories.uploads import SlotRecord, UploadRepository
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaErrorCondition
from chatgate.xml.element import Element
from chatgate.xmpp.stanza import error_reply, iq_result, payload_of

if TYPE_CHECKING:
    from chatgate.modules.upload.options import UploadOptions
    from chatgate.xmpp.session import C2SSession

log = logging.getLogger(__name__)


class UploadService:
    """Answers the service domains of every host (`parents`: service domain -> host)."""

    def __init__(
        self,
        options: UploadOptions,
        repository: UploadRepository,
        base_url: str,
        parents: dict[str, str],
        clock: Callable[[], datetime],
    ) -> None:
        self.options = options
        self.repository = repository
        self.base_url = base_url
        self.parents = parents
        self.clock = clock
        #: set at start, from the installation secret
        self.signer: SlotSigner | None = None

    async def handle(self, session: C2SSession, stanza: Element, to: JID) -> None:
        if stanza.name != "iq":
            if stanza.name == "message" and stanza.get("type") != "error":
                self._error(
                    session, stanza, SlotError(StanzaErrorCondition.SERVICE_UNAVAILABLE, "")
                )
            return  # presence to the service: nothing to do
        kind = stanza.get("type")
        if kind not in ("get", "set"):
            return  # results and errors answer nothing
        payload = payload_of(stanza)
        try:
            if to.local or to.resource or payload is None:
                raise SlotError(StanzaErrorCondition.SERVICE_UNAVAILABLE, "")
            answer = await self._answer(session, kind, payload, to.domain)
        except SlotError as exc:
            self._error(session, stanza, exc)
            return
        reply = iq_result(stanza, answer)
        session.send(reply)

    async def _answer(
        self, session: C2SSession, kind: str, payload: Element, domain: str
    ) -> Element:
        key = (kind, payload.ns, payload.name)
        if key == ("get", ns.DISCO_INFO, "query"):
            if payload.get("node"):
                raise SlotError(StanzaErrorCondition.ITEM_NOT_FOUND, "no such node")
            return self.info()
        if key == ("get", ns.DISCO_ITEMS, "query"):
            if payload.get("node"):
                raise SlotError(StanzaErrorCondition.ITEM_NOT_FOUND, "no such node")
            return Element("query", ns.DISCO_ITEMS)
        if key == ("get", UPLOAD, "request"):
            return await self.slot(session, payload, domain)
        raise SlotError(StanzaErrorCondition.SERVICE_UNAVAILABLE, "")

    def info(self) -> Element:
        """disco#info: the identity, the feature, and XEP-0363 §3's max-file-size form."""
        query = Element("query", ns.DISCO_INFO)
        query.sub(
            "identity", attrs={"category": "store", "type": "file", "name": "HTTP File Upload"}
        )
        for var in (ns.DISCO_INFO, ns.DISCO_ITEMS, UPLOAD):
            query.sub("feature", attrs={"var": var})
        size = FormField("max-file-size", values=(str(self.options.max_file_size),))
        query.append(build_form(UPLOAD, (size,), form="result"))
        return query

    async def slot(self, session: C2SSession, request: Element, domain: str) -> Element:
        if self.parents.get(domain) != session.domain:
            raise SlotError(
                StanzaErrorCondition.FORBIDDEN,
                f"only accounts of {self.parents.get(domain)} may upload here",
            )
        assert self.signer is not None, "the module's start loads the secret"
        options = self.options
        wanted = read_request(request, options.max_file_size, tuple(options.allowed_types))
        now = self.clock()
        put_before = now + timedelta(seconds=options.put_timeout)
        token = new_token()
        record = SlotRecord(
            token,
            wanted.filename,
            wanted.size,
            wanted.content_type,
            put_before,
            None,
            None,
            now + timedelta(seconds=options.expiry),
        )
        try:
            refused = await self.repository.reserve(
                (session.username, session.domain),
                record,
                now=now,
                quota=options.quota,
                per_window=options.max_slots_per_minute,
                window=timedelta(minutes=1),
            )
        except AccountNotFound:
            raise SlotError(StanzaErrorCondition.FORBIDDEN, "no such account") from None
        if refused is not None:
            if refused.reason == "quota":
                text = f"your uploads would hold more than {options.quota} bytes"
            else:
                text = f"at most {options.max_slots_per_minute} slots a minute"
            raise retry_error(StanzaErrorCondition.RESOURCE_CONSTRAINT, text, refused.retry)
        deadline = int(put_before.timestamp())
        signature = self.signer.signature(
            token, wanted.filename, wanted.size, wanted.content_type, deadline
        )
        log.debug("upload slot %s for %s: %d bytes", token, session.bare, wanted.size)
        return slot_element(
            put_url(self.base_url, token, wanted.filename, deadline, signature),
            get_url(self.base_url, token, wanted.filename),
        )

    def _error(self, session: C2SSession, stanza: Element, exc: SlotError) -> None:
        reply = error_reply(stanza, exc.condition, exc.text, error_type=exc.error_type)
        if exc.app is not None:
            error = reply.find("error")
            assert error is not None
            error.append(exc.app)
        session.send(reply)
