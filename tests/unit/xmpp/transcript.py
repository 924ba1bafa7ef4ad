"""Drive the negotiation core with client bytes, fed whole, byte by byte, or split at random.

The harness plays the driver's part: it parses with the real stream parser,
answers credential requests from an in-memory table of SCRAM keys, and resets
the parser when the core says so.  Every test using it runs in the three
feeding modes and must see the same server output.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from chatgate.auth.credentials import ScramKeys, derive_all, verify_password
from chatgate.auth.provider import Capability
from chatgate.sasl.base import ConnectionFacts, CredentialAnswer, NeedCredentials
from chatgate.sasl.registry import builtin_mechanisms
from chatgate.sasl.selection import offered_mechanisms
from chatgate.vocabulary.errors import PeerProtocolError
from chatgate.xml.parser import Stanza, StreamClosed, StreamOpened, XmlStreamParser
from chatgate.xmpp import negotiation as neg
from chatgate.xmpp.output import stream_header

SECRET = b"test-secret-0123456789abcdef0123"
ALL_CAPS = frozenset(Capability)
HASH_OF = {
    Capability.SCRAM_SHA_1_KEYS: "sha1",
    Capability.SCRAM_SHA_256_KEYS: "sha256",
    Capability.SCRAM_SHA_512_KEYS: "sha512",
}

HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
)


def split(data: bytes, mode: str, seed: int = 7) -> list[bytes]:
    if mode == "whole":
        return [data]
    if mode == "bytewise":
        return [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(seed)
    chunks, i = [], 0
    while i < len(data):
        n = rng.randint(1, 9)
        chunks.append(data[i : i + n])
        i += n
    return chunks


def settings(
    *,
    starttls: bool = True,
    require_tls: bool = True,
    mechanisms: tuple[str, ...] = ("SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"),
    allow_plain_without_tls: bool = False,
    pre_auth_namespaces: frozenset[str] = frozenset(),
) -> neg.NegotiationSettings:
    registry = builtin_mechanisms()

    def offered(facts: ConnectionFacts) -> list[str]:
        return offered_mechanisms(
            list(mechanisms),
            registry,
            ALL_CAPS,
            facts,
            allow_plaintext_without_tls=allow_plain_without_tls,
        )

    def make(name: str, facts: ConnectionFacts):  # type: ignore[no-untyped-def]
        return registry.get(name)(facts, SECRET, False)

    return neg.NegotiationSettings(
        domain="localhost",
        starttls_available=starttls,
        require_tls=require_tls,
        offered_mechanisms=offered,
        make_mechanism=make,
        pre_auth_namespaces=pre_auth_namespaces,
    )


@dataclass
class Harness:
    settings: neg.NegotiationSettings
    mode: str = "whole"
    facts: ConnectionFacts = field(default_factory=lambda: ConnectionFacts(domain="localhost"))
    users: dict[str, tuple[str, dict[str, ScramKeys]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.core = neg.C2SNegotiation(self.settings, self.facts)
        self.parser = XmlStreamParser()
        self.actions: list[neg.Action] = []
        self.closed: neg.CloseStream | None = None

    def add_user(self, name: str, password: str) -> None:
        self.users[name] = (password, derive_all(password))

    def client(self, text: str) -> str:
        """Feed client text; return what the server wrote in answer."""
        out: list[str] = []
        for chunk in split(text.encode(), self.mode):
            if self.closed is not None:
                break
            try:
                events = self.parser.feed(chunk)
            except PeerProtocolError as exc:
                self.closed = neg.CloseStream(exc.condition, exc.text)
                break
            for event in events:
                if isinstance(event, StreamOpened):
                    self._run(self.core.stream_opened(event), out)
                elif isinstance(event, Stanza):
                    self._run(self.core.element(event.element), out)
                elif isinstance(event, StreamClosed):
                    self._run(self.core.stream_closed(), out)
        return "".join(out)

    def tls_established(self) -> str:
        self.facts = ConnectionFacts(domain="localhost", tls_active=True, tls_version="TLSv1.3")
        out: list[str] = []
        self._run(self.core.tls_established(self.facts), out)
        return "".join(out)

    def _run(self, actions: list[neg.Action], out: list[str]) -> None:
        for action in actions:
            self.actions.append(action)
            if isinstance(action, neg.Send):
                out.append(action.text)
            elif isinstance(action, neg.OpenStream):
                out.append(stream_header(action.header).decode())
            elif isinstance(action, neg.SendFeatures):
                out.append(f"<stream:features>{action.children}</stream:features>")
            elif isinstance(action, neg.ResetParser):
                self.parser = XmlStreamParser()
            elif isinstance(action, neg.CredentialsNeeded):
                self._run(self.core.credentials(self._answer(action.request)), out)
            elif isinstance(action, neg.CloseStream):
                self.closed = action

    def _answer(self, request: NeedCredentials) -> CredentialAnswer:
        entry = self.users.get(request.username)
        if entry is None:
            return CredentialAnswer()
        _password, keys = entry
        if request.capability is Capability.VERIFY_PASSWORD:
            assert request.password is not None
            return CredentialAnswer(
                verified=verify_password(request.password, keys["sha256"]), user_exists=True
            )
        return CredentialAnswer(scram_keys=keys[HASH_OF[request.capability]], user_exists=True)
