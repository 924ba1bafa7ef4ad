"""The async driver: credential requests answered from a provider, errors made temporary.

`FakeProvider` is a test double for the storage side; the mechanisms under test
are the real ones, and the SCRAM client is scramp.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from scramp import ScramClient

from chatgate.auth.credentials import ScramKeys, derive_scram_keys
from chatgate.auth.provider import Capability
from chatgate.sasl.base import (
    Challenge,
    ConnectionFacts,
    CredentialAnswer,
    Failure,
    NeedCredentials,
    Success,
)
from chatgate.sasl.driver import advance, answer_request
from chatgate.sasl.plain import PlainMechanism
from chatgate.sasl.scram import ScramSha256Mechanism
from chatgate.vocabulary.errors import SaslFailureCondition as C

FACTS = ConnectionFacts(domain="example.com", tls_active=True)


@dataclass
class FakeProvider:
    passwords: dict[tuple[str, str], str] = field(default_factory=dict)
    broken: bool = False
    calls: list[tuple[str, ...]] = field(default_factory=list)
    offers: frozenset[Capability] = frozenset(Capability)

    def _check(self) -> None:
        if self.broken:
            raise ConnectionError("database is down")

    async def scram_keys(self, username: str, domain: str, hash_name: str) -> ScramKeys | None:
        self.calls.append(("scram_keys", username, domain, hash_name))
        self._check()
        password = self.passwords.get((username, domain))
        return None if password is None else derive_scram_keys(password, hash_name)

    async def verify_password(self, username: str, domain: str, password: str) -> bool:
        self.calls.append(("verify_password", username, domain))
        self._check()
        return self.passwords.get((username, domain)) == password

    async def user_exists(self, username: str, domain: str) -> bool:
        self.calls.append(("user_exists", username, domain))
        self._check()
        return (username, domain) in self.passwords


PROVIDER = FakeProvider({("user", "example.com"): "pencil"})


async def test_advance_completes_scram_with_provider_keys() -> None:
    provider = FakeProvider({("user", "example.com"): "pencil"})
    mech = ScramSha256Mechanism(FACTS, b"secret")
    client = ScramClient(["SCRAM-SHA-256"], "user", "pencil")
    step = await advance(
        mech, mech.start(client.get_client_first().encode()), provider, "example.com"
    )
    assert isinstance(step, Challenge)
    assert provider.calls == [("scram_keys", "user", "example.com", "sha256")]
    client.set_server_first(step.data.decode())
    step = await advance(
        mech, mech.respond(client.get_client_final().encode()), provider, "example.com"
    )
    assert isinstance(step, Success)
    assert step.additional_data is not None
    client.set_server_final(step.additional_data.decode())


async def test_advance_completes_plain_with_provider_verdict() -> None:
    mech = PlainMechanism(FACTS, b"secret", False)
    step = await advance(mech, mech.start(b"\0user\0pencil"), PROVIDER, "example.com")
    assert step == Success("user")


async def test_advance_refuses_plain_with_wrong_password() -> None:
    mech = PlainMechanism(FACTS, b"secret", False)
    step = await advance(mech, mech.start(b"\0user\0wrong"), PROVIDER, "example.com")
    assert isinstance(step, Failure) and step.condition is C.NOT_AUTHORIZED


@pytest.mark.parametrize("initial", [b"n,,n=user,r=abc", b"\0user\0pencil"])
async def test_advance_turns_provider_error_into_temporary_auth_failure(initial: bytes) -> None:
    mech = (
        ScramSha256Mechanism(FACTS, b"secret")
        if initial.startswith(b"n")
        else PlainMechanism(FACTS, b"secret", False)
    )
    step = await advance(mech, mech.start(initial), FakeProvider(broken=True), "example.com")
    assert isinstance(step, Failure)
    assert step.condition is C.TEMPORARY_AUTH_FAILURE


async def test_advance_returns_other_steps_unchanged() -> None:
    mech = PlainMechanism(FACTS, b"secret", False)
    step = mech.start(None)
    assert await advance(mech, step, PROVIDER, "example.com") is step


async def test_answer_request_reports_unknown_user_as_no_keys() -> None:
    request = NeedCredentials(Capability.SCRAM_SHA_1_KEYS, "nobody")
    assert await answer_request(request, PROVIDER, "example.com") == CredentialAnswer()


async def test_answer_request_asks_for_the_requested_hash() -> None:
    provider = FakeProvider({("user", "example.com"): "pencil"})
    answer = await answer_request(
        NeedCredentials(Capability.SCRAM_SHA_512_KEYS, "user"), provider, "example.com"
    )
    assert answer.user_exists and answer.scram_keys is not None
    assert answer.scram_keys.hash_name == "sha512"
    assert provider.calls == [("scram_keys", "user", "example.com", "sha512")]


async def test_answer_request_reports_provider_error_as_temporary_failure() -> None:
    request = NeedCredentials(Capability.VERIFY_PASSWORD, "user", password="pencil")
    answer = await answer_request(request, FakeProvider(broken=True), "example.com")
    assert answer == CredentialAnswer(temporary_failure=True)


async def test_answer_request_rejects_capability_it_cannot_serve() -> None:
    with pytest.raises(ValueError, match="ANONYMOUS"):
        await answer_request(NeedCredentials(Capability.ANONYMOUS, "x"), PROVIDER, "example.com")


@dataclass
class HoldingProvider(FakeProvider):
    """Also answers the held questions (as the internal provider does for registrations
    awaiting approval): `held` names have keys that may not log in yet."""

    held: dict[tuple[str, str], str] = field(default_factory=dict)

    async def scram_keys_or_held(
        self, username: str, domain: str, hash_name: str
    ) -> tuple[ScramKeys | None, str | None]:
        password = self.held.get((username, domain))
        if password is None:
            return await self.scram_keys(username, domain, hash_name), None
        return derive_scram_keys(password, hash_name), "awaiting approval"

    async def verify_password_or_held(
        self, username: str, domain: str, password: str
    ) -> tuple[bool, str | None]:
        if (username, domain) not in self.held:
            return await self.verify_password(username, domain, password), None
        return False, "awaiting approval" if self.held[(username, domain)] == password else None


async def test_held_credentials_reach_the_mechanism_only_as_held() -> None:
    provider = HoldingProvider(
        {("user", "example.com"): "pencil"}, held={("new", "example.com"): "pw"}
    )
    scram = NeedCredentials(Capability.SCRAM_SHA_256_KEYS, "new")
    answer = await answer_request(scram, provider, "example.com")
    assert answer.scram_keys is None and answer.held_keys is not None  # never plain keys
    assert (answer.held, answer.user_exists) == ("awaiting approval", False)
    right = NeedCredentials(Capability.VERIFY_PASSWORD, "new", password="pw")
    wrong = NeedCredentials(Capability.VERIFY_PASSWORD, "new", password="nope")
    assert await answer_request(right, provider, "example.com") == CredentialAnswer(
        held="awaiting approval"
    )
    assert await answer_request(wrong, provider, "example.com") == CredentialAnswer()
    account = NeedCredentials(Capability.VERIFY_PASSWORD, "user", password="pencil")
    assert await answer_request(account, provider, "example.com") == CredentialAnswer(verified=True)
    keys = await answer_request(
        NeedCredentials(Capability.SCRAM_SHA_256_KEYS, "user"), provider, "example.com"
    )
    assert keys.scram_keys is not None and keys.held is None


@dataclass
class LockingProvider(HoldingProvider):
    """Also says which accounts exist but are locked, and which condition a right
    proof of them gets (as the internal provider does)."""

    locked: frozenset[tuple[str, str]] = frozenset()

    async def user_exists_or_held(self, username: str, domain: str) -> tuple[bool, str | None]:
        if (username, domain) in self.locked:
            return True, "locked"
        return await self.user_exists(username, domain), None

    @staticmethod
    def held_condition(text: str) -> C:
        return C.ACCOUNT_DISABLED if text == "locked" else C.NOT_AUTHORIZED


async def test_held_answers_carry_the_providers_condition() -> None:
    provider = LockingProvider(
        {("user", "example.com"): "pencil"},
        held={("new", "example.com"): "pw"},
        locked=frozenset({("user", "example.com")}),
    )
    cert = await answer_request(
        NeedCredentials(Capability.CERT_IDENTITY, "user"), provider, "example.com"
    )
    assert cert == CredentialAnswer(
        user_exists=True, held="locked", held_condition=C.ACCOUNT_DISABLED
    )
    right = NeedCredentials(Capability.VERIFY_PASSWORD, "new", password="pw")
    assert await answer_request(right, provider, "example.com") == CredentialAnswer(
        held="awaiting approval", held_condition=C.NOT_AUTHORIZED
    )
    other = NeedCredentials(Capability.CERT_IDENTITY, "nobody")
    assert await answer_request(other, provider, "example.com") == CredentialAnswer()
