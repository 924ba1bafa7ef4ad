"""SCRAM-*-PLUS (RFC 5802 §6) and XEP-0474 downgrade protection, driven with transcripts.

The client is scramp (admitted to the name "tls-exporter", whose data it treats
as opaque bytes like any type), or the RFC 5802 §3 formulas in `test_scram`
for messages scramp will not build.  Published vector: the XEP-0474 §4.3 hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
import scramp.core
from scramp import ScramClient

from chatgate.auth.credentials import derive_scram_keys
from chatgate.auth.provider import Capability
from chatgate.sasl.base import (
    Challenge,
    ConnectionFacts,
    CredentialAnswer,
    Failure,
    NeedCredentials,
    Success,
)
from chatgate.sasl.channel_binding import feature_xml, ssdp_hash
from chatgate.sasl.scram import (
    ScramMechanism,
    ScramSha1PlusMechanism,
    ScramSha256PlusMechanism,
    ScramSha512PlusMechanism,
)
from chatgate.vocabulary.errors import SaslFailureCondition as C

SECRET = b"server secret for tests"


def _known(password: str, hash_name: str) -> CredentialAnswer:
    keys = derive_scram_keys(password, hash_name, salt=b"0123456789abcdef", iterations=4096)
    return CredentialAnswer(scram_keys=keys, user_exists=True)


def _to_server_first(
    mech: ScramMechanism, client_first: bytes, answer: CredentialAnswer
) -> Challenge:
    step = mech.start(client_first)
    assert isinstance(step, NeedCredentials), step
    server_first = mech.resume(answer)
    assert isinstance(server_first, Challenge), server_first
    return server_first


def _client_final(
    hash_name: str,
    password: str,
    client_first_bare: str,
    server_first: bytes,
    *,
    channel_binding: bytes,
) -> bytes:
    """An RFC 5802 §3 client-final message, computed from the formulas."""
    attrs = dict(a.split("=", 1) for a in server_first.decode().split(","))
    salted = hashlib.pbkdf2_hmac(
        hash_name, password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"])
    )
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    stored_key = hashlib.new(hash_name, client_key).digest()
    without_proof = f"c={base64.b64encode(channel_binding).decode()},r={attrs['r']}"
    auth_message = f"{client_first_bare},{server_first.decode()},{without_proof}".encode()
    signature = hmac.digest(stored_key, auth_message, hash_name)
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


PLUS: dict[str, type[ScramMechanism]] = {
    "sha1": ScramSha1PlusMechanism,
    "sha256": ScramSha256PlusMechanism,
    "sha512": ScramSha512PlusMechanism,
}
EXPORTER = b"E" * 32
END_POINT = b"P" * 32
UNIQUE = b"U" * 12
TLS13 = ConnectionFacts(
    domain="example.com",
    tls_active=True,
    tls_version="TLSv1.3",
    channel_bindings={"tls-exporter": EXPORTER, "tls-server-end-point": END_POINT},
)
TLS12 = ConnectionFacts(
    domain="example.com",
    tls_active=True,
    tls_version="TLSv1.2",
    channel_bindings={
        "tls-exporter": EXPORTER,
        "tls-unique": UNIQUE,
        "tls-server-end-point": END_POINT,
    },
)


@pytest.fixture(autouse=True)
def _scramp_admits_tls_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    cls = scramp.core.CbName
    monkeypatch.setattr(cls, "SUPPORTED_TYPES", cls.SUPPORTED_TYPES | {"tls-exporter"})
    monkeypatch.setattr(cls, "UNSUPPORTED_TYPES", frozenset())


def _login(mech: ScramMechanism, hash_name: str, cb_type: str, data: bytes):  # type: ignore[no-untyped-def]
    client = ScramClient([mech.name], "user", "pencil", channel_binding=(cb_type, data))
    server_first = _to_server_first(
        mech, client.get_client_first().encode(), _known("pencil", hash_name)
    )
    client.set_server_first(server_first.data.decode())
    step = mech.respond(client.get_client_final().encode())
    return client, step


@pytest.mark.parametrize("hash_name", list(PLUS))
@pytest.mark.parametrize(
    ("facts", "cb_type", "data"),
    [
        (TLS13, "tls-exporter", EXPORTER),
        (TLS13, "tls-server-end-point", END_POINT),
        (TLS12, "tls-unique", UNIQUE),
        (TLS12, "tls-exporter", EXPORTER),
    ],
    ids=["exporter-1.3", "end-point-1.3", "unique-1.2", "exporter-1.2"],
)
def test_scram_plus_succeeds_with_each_binding_type(
    hash_name: str, facts: ConnectionFacts, cb_type: str, data: bytes
) -> None:
    mech = PLUS[hash_name](facts, SECRET, plus_offered=True)
    client, step = _login(mech, hash_name, cb_type, data)
    assert isinstance(step, Success), step
    assert step.additional_data is not None
    client.set_server_final(step.additional_data.decode())  # scramp checks ServerSignature


@pytest.mark.parametrize("hash_name", list(PLUS))
def test_scram_plus_rejects_channel_binding_mismatch(hash_name: str) -> None:
    """A relayed connection: the client bound to *its* TLS session, not ours."""
    mech = PLUS[hash_name](TLS13, SECRET, plus_offered=True)
    _, step = _login(mech, hash_name, "tls-exporter", b"R" * 32)
    assert isinstance(step, Failure) and step.condition is C.NOT_AUTHORIZED


def test_scram_plus_rejects_binding_data_of_another_type() -> None:
    mech = ScramSha256PlusMechanism(TLS13, SECRET, plus_offered=True)
    _, step = _login(mech, "sha256", "tls-exporter", END_POINT)
    assert isinstance(step, Failure) and step.condition is C.NOT_AUTHORIZED


def test_tls_unique_is_unknown_on_tls13() -> None:
    step = ScramSha256PlusMechanism(TLS13, SECRET, plus_offered=True).start(
        b"p=tls-unique,,n=user,r=abc"
    )
    assert isinstance(step, Failure) and step.condition is C.MALFORMED_REQUEST


@pytest.mark.parametrize("flag", [b"n", b"y"])
def test_plus_mechanism_requires_the_p_flag(flag: bytes) -> None:
    step = ScramSha256PlusMechanism(TLS13, SECRET, plus_offered=True).start(
        flag + b",,n=user,r=abc"
    )
    assert isinstance(step, Failure) and step.condition is C.MALFORMED_REQUEST


def test_header_changed_between_first_and_final_fails() -> None:
    """c= must repeat the gs2 header of client-first: 'p=tls-exporter' then 'n' is a downgrade."""
    mech = ScramSha256PlusMechanism(TLS13, SECRET, plus_offered=True)
    server_first = _to_server_first(
        mech, b"p=tls-exporter,,n=user,r=abc", _known("pencil", "sha256")
    )
    final = _client_final(
        "sha256", "pencil", "n=user,r=abc", server_first.data, channel_binding=b"n,,"
    )
    step = mech.respond(final)
    assert isinstance(step, Failure) and step.condition is C.NOT_AUTHORIZED


def test_formula_client_with_exporter_binding_succeeds() -> None:
    """Independent of scramp: c = base64(gs2-header + binding data) (RFC 5802 §5.1 c)."""
    mech = ScramSha256PlusMechanism(TLS13, SECRET, plus_offered=True)
    server_first = _to_server_first(
        mech, b"p=tls-exporter,,n=user,r=abc", _known("pencil", "sha256")
    )
    final = _client_final(
        "sha256",
        "pencil",
        "n=user,r=abc",
        server_first.data,
        channel_binding=b"p=tls-exporter,," + EXPORTER,
    )
    assert isinstance(mech.respond(final), Success)


def test_declarations() -> None:
    for hash_name, cls in PLUS.items():
        assert cls.name.endswith("-PLUS") and cls.requires_channel_binding
        assert cls.hash_name == hash_name
        assert not cls.requires_peer_certificate
    assert ScramSha1PlusMechanism.needs == frozenset({Capability.SCRAM_SHA_1_KEYS})


# -- XEP-0474 (SSDP) ----------------------------------------------------------------------------


def test_ssdp_hash_matches_the_xep0474_example() -> None:
    # XEP-0474 §4.3: SHA-1 of
    # 'SCRAM-SHA-1\x1eSCRAM-SHA-1-PLUS\x1ftls-exporter\x1etls-server-end-point'
    assert (
        ssdp_hash(
            "sha1",
            ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"],
            ["tls-server-end-point", "tls-exporter"],
        )
        == "G6k/rBLDqgOhRRaCuuatSDFkJ08="
    )


def test_ssdp_hash_without_xep0440_has_no_separator() -> None:
    import hashlib

    expected = base64.b64encode(hashlib.sha256(b"PLAIN\x1eSCRAM-SHA-256").digest()).decode()
    assert ssdp_hash("sha256", ["SCRAM-SHA-256", "PLAIN"], None) == expected


def test_server_first_carries_h_covering_mechanisms_and_binding_types() -> None:
    advertised = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN"]
    mech = ScramSha256PlusMechanism(TLS13, SECRET, plus_offered=True, advertised=advertised)
    _client, step = _login(mech, "sha256", "tls-exporter", EXPORTER)
    assert isinstance(step, Success)
    attrs = dict(a.split("=", 1) for a in mech._server_first.split(","))
    assert attrs["h"] == ssdp_hash("sha256", advertised, ["tls-exporter", "tls-server-end-point"])


def test_non_plus_exchange_hashes_mechanisms_only_when_no_plus_was_offered() -> None:
    from chatgate.sasl.scram import ScramSha256Mechanism

    advertised = ["SCRAM-SHA-256", "PLAIN"]
    mech = ScramSha256Mechanism(TLS13, SECRET, plus_offered=False, advertised=advertised)
    server_first = _to_server_first(mech, b"n,,n=user,r=abc", _known("pencil", "sha256"))
    assert server_first.data.decode().endswith(",h=" + ssdp_hash("sha256", advertised, None))


def test_without_advertised_list_there_is_no_h() -> None:
    mech = ScramSha256PlusMechanism(TLS13, SECRET, plus_offered=True)
    step = mech.start(b"p=tls-exporter,,n=user,r=abc")
    assert isinstance(step, NeedCredentials)
    assert ",h=" not in mech.resume(_known("pencil", "sha256")).data.decode()


def test_xep0440_feature_lists_types() -> None:
    assert feature_xml(["tls-exporter", "tls-server-end-point"]) == (
        "<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>"
        '<channel-binding type="tls-exporter"/><channel-binding type="tls-server-end-point"/>'
        "</sasl-channel-binding>"
    )
    assert feature_xml([]) == ""
