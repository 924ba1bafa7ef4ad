"""SCRAM answers an unknown user with the configured iteration count, as a password
set now would be stored (issue 9 item 10: 4096 against 10,000 told them apart)."""

from __future__ import annotations

import base64

import pytest
from scramp import ScramClient

from chatgate.auth.credentials import derive_scram_keys
from chatgate.sasl.base import Challenge, ConnectionFacts, CredentialAnswer, NeedCredentials
from chatgate.sasl.registry import builtin_mechanisms
from chatgate.sasl.scram import (
    ScramFactory,
    ScramMechanism,
    ScramSha256Mechanism,
    with_unknown_user_iterations,
)

FACTS = ConnectionFacts(domain="example.com", tls_active=True)
SECRET = b"server secret for tests"
SCRAM_NAMES = [
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
    "SCRAM-SHA-512",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-256-PLUS",
    "SCRAM-SHA-512-PLUS",
]


def server_first(mech: ScramMechanism, username: str, answer: CredentialAnswer) -> dict[str, str]:
    gs2 = "p=tls-exporter," if mech.requires_channel_binding else "n,"
    step = mech.start(f"{gs2},n={username},r=abc".encode())
    assert isinstance(step, NeedCredentials), step
    challenge = mech.resume(answer)
    assert isinstance(challenge, Challenge), challenge
    return dict(a.split("=", 1) for a in challenge.data.decode().split(","))


@pytest.mark.parametrize("iterations", [4096, 10_000, 50_000])
def test_unknown_user_gets_the_iteration_count_of_a_password_set_now(iterations: int) -> None:
    """The account's keys are derived as the CLI and registration derive them, with
    the configured count; the unknown user's server-first must carry the same count."""
    keys = derive_scram_keys("pencil", "sha256", iterations=iterations)
    known = server_first(
        ScramSha256Mechanism(FACTS, SECRET, unknown_user_iterations=iterations),
        "user",
        CredentialAnswer(scram_keys=keys, user_exists=True),
    )
    unknown = server_first(
        ScramSha256Mechanism(FACTS, SECRET, unknown_user_iterations=iterations),
        "nobody",
        CredentialAnswer(),
    )
    assert unknown.keys() == known.keys()
    assert unknown["i"] == known["i"] == str(iterations)
    assert len(base64.b64decode(unknown["s"])) == len(base64.b64decode(known["s"]))


@pytest.mark.parametrize("name", SCRAM_NAMES)
def test_configured_registry_builds_mechanisms_with_the_configured_count(name: str) -> None:
    registry = with_unknown_user_iterations(builtin_mechanisms(load_entry_points=False), 10_000)
    factory = registry.get(name)
    assert isinstance(factory, ScramFactory)
    # Selection reads the static description without building anything.
    assert (factory.name, factory.requires_channel_binding) == (
        name,
        name.endswith("-PLUS"),
    )
    facts = ConnectionFacts(
        domain="example.com", tls_active=True, channel_bindings={"tls-exporter": b"x" * 32}
    )
    mech = factory(facts, SECRET, name.endswith("-PLUS"))
    assert isinstance(mech, ScramMechanism)
    assert server_first(mech, "nobody", CredentialAnswer())["i"] == "10000"


def test_configured_registry_keeps_other_mechanisms() -> None:
    plain = builtin_mechanisms(load_entry_points=False)
    registry = with_unknown_user_iterations(plain, 10_000)
    assert registry.names() == plain.names()
    assert registry.get("PLAIN") is plain.get("PLAIN")
    assert registry.get("EXTERNAL") is plain.get("EXTERNAL")


def test_unknown_user_still_fails_at_the_end_with_the_configured_count() -> None:
    mech = ScramSha256Mechanism(FACTS, SECRET, unknown_user_iterations=10_000)
    client = ScramClient(["SCRAM-SHA-256"], "nobody", "pencil")
    assert isinstance(mech.start(client.get_client_first().encode()), NeedCredentials)
    challenge = mech.resume(CredentialAnswer())
    assert isinstance(challenge, Challenge)
    client.set_server_first(challenge.data.decode())  # scramp derives with i=10000
    step = mech.respond(client.get_client_final().encode())
    assert type(step).__name__ == "Failure"
