"""SCRAM server mechanisms against published vectors and an independent client.

Published vectors: RFC 5802 §5 (SCRAM-SHA-1) and RFC 7677 §3 (SCRAM-SHA-256),
with the server nonce fixed to the one in the RFC.  Independent client: scramp,
for all three hashes.  Messages that scramp will not produce (authzid, broken
channel-binding attributes) are built by `_client_final` below, which follows
the RFC 5802 §3 formulas directly and shares no code with the mechanism.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import ClassVar

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
    Step,
    Success,
)
from chatgate.sasl.scram import (
    ScramMechanism,
    ScramSha1Mechanism,
    ScramSha256Mechanism,
    ScramSha512Mechanism,
)
from chatgate.vocabulary.errors import SaslFailureCondition as C

FACTS = ConnectionFacts(domain="example.com", tls_active=True)
SECRET = b"server secret for tests"
MECHANISMS: dict[str, type[ScramMechanism]] = {
    "sha1": ScramSha1Mechanism,
    "sha256": ScramSha256Mechanism,
    "sha512": ScramSha512Mechanism,
}
ALL_HASHES = pytest.mark.parametrize("hash_name", list(MECHANISMS))


def _keys(password: str, hash_name: str) -> ScramKeys:
    return derive_scram_keys(password, hash_name, salt=b"0123456789abcdef", iterations=4096)


def _known(password: str, hash_name: str) -> CredentialAnswer:
    return CredentialAnswer(scram_keys=_keys(password, hash_name), user_exists=True)


UNKNOWN = CredentialAnswer()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _client_final(
    hash_name: str,
    password: str,
    client_first_bare: str,
    server_first: bytes,
    *,
    channel_binding: bytes = b"n,,",
    nonce: str | None = None,
) -> bytes:
    """An RFC 5802 §3 client-final message, computed from the formulas."""
    attrs = dict(a.split("=", 1) for a in server_first.decode().split(","))
    salted = hashlib.pbkdf2_hmac(
        hash_name, password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"])
    )
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    stored_key = hashlib.new(hash_name, client_key).digest()
    without_proof = f"c={_b64(channel_binding)},r={nonce or attrs['r']}"
    auth_message = f"{client_first_bare},{server_first.decode()},{without_proof}".encode()
    signature = hmac.digest(stored_key, auth_message, hash_name)
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    return f"{without_proof},p={_b64(proof)}".encode()


def _to_server_first(
    mech: ScramMechanism, client_first: bytes, answer: CredentialAnswer
) -> Challenge:
    step = mech.start(client_first)
    assert isinstance(step, NeedCredentials), step
    server_first = mech.resume(answer)
    assert isinstance(server_first, Challenge), server_first
    return server_first


def _run_scramp(
    mech: ScramMechanism, answer: CredentialAnswer, username: str, password: str
) -> tuple[ScramClient, Step]:
    client = ScramClient([mech.name], username, password)
    server_first = _to_server_first(mech, client.get_client_first().encode(), answer)
    client.set_server_first(server_first.data.decode())
    return client, mech.respond(client.get_client_final().encode())


def _assert_failure(step: Step, condition: C) -> Failure:
    assert isinstance(step, Failure), step
    assert step.condition is condition, step
    return step


# -- published vectors -----------------------------------------------------------------


def test_scram_sha1_matches_rfc5802_example() -> None:
    # RFC 5802 §5: user "user", password "pencil".
    mech = ScramSha1Mechanism(FACTS, SECRET, nonce="3rfcNHYJY1ZVvWVs7j")
    step = mech.start(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL")
    assert step == NeedCredentials(Capability.SCRAM_SHA_1_KEYS, "user")
    keys = derive_scram_keys(
        "pencil", "sha1", salt=base64.b64decode("QSXCR+Q6sek8bf92"), iterations=4096
    )
    step = mech.resume(CredentialAnswer(scram_keys=keys, user_exists=True))
    assert step == Challenge(
        b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
    )
    step = mech.respond(
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
    )
    assert step == Success("user", additional_data=b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")


def test_scram_sha256_matches_rfc7677_example() -> None:
    # RFC 7677 §3: user "user", password "pencil".
    mech = ScramSha256Mechanism(FACTS, SECRET, nonce="%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    step = mech.start(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    assert step == NeedCredentials(Capability.SCRAM_SHA_256_KEYS, "user")
    keys = derive_scram_keys(
        "pencil", "sha256", salt=base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), iterations=4096
    )
    step = mech.resume(CredentialAnswer(scram_keys=keys, user_exists=True))
    assert step == Challenge(
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    step = mech.respond(
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    assert step == Success(
        "user", additional_data=b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    )


def test_scram_rejects_rfc5802_client_final_replayed_into_new_exchange() -> None:
    # A captured client-final is useless against a fresh (random) server nonce.
    mech = ScramSha1Mechanism(FACTS, SECRET)
    keys = derive_scram_keys(
        "pencil", "sha1", salt=base64.b64decode("QSXCR+Q6sek8bf92"), iterations=4096
    )
    _to_server_first(
        mech,
        b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
        CredentialAnswer(scram_keys=keys, user_exists=True),
    )
    step = mech.respond(
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
    )
    _assert_failure(step, C.NOT_AUTHORIZED)


# -- scramp as the client ------------------------------------------------------------------


@ALL_HASHES
def test_scram_authenticates_scramp_client(hash_name: str) -> None:
    mech = MECHANISMS[hash_name](FACTS, SECRET)
    client, step = _run_scramp(mech, _known("pencil", hash_name), "user", "pencil")
    assert isinstance(step, Success), step
    assert step.username == "user"
    assert step.authzid is None
    assert step.additional_data is not None
    client.set_server_final(step.additional_data.decode())  # scramp checks ServerSignature


@ALL_HASHES
def test_scram_rejects_wrong_password_from_scramp_client(hash_name: str) -> None:
    mech = MECHANISMS[hash_name](FACTS, SECRET)
    _, step = _run_scramp(mech, _known("pencil", hash_name), "user", "not pencil")
    failure = _assert_failure(step, C.NOT_AUTHORIZED)
    assert failure.username == "user"


def test_scram_without_initial_response_sends_empty_challenge_then_completes() -> None:
    # RFC 6120 §6.4.2: no initial response -> empty challenge, client-first follows.
    mech = ScramSha256Mechanism(FACTS, SECRET)
    assert mech.start(None) == Challenge(b"")
    client = ScramClient(["SCRAM-SHA-256"], "user", "pencil")
    assert isinstance(mech.respond(client.get_client_first().encode()), NeedCredentials)
    server_first = mech.resume(_known("pencil", "sha256"))
    assert isinstance(server_first, Challenge)
    client.set_server_first(server_first.data.decode())
    assert isinstance(mech.respond(client.get_client_final().encode()), Success)


def test_scram_server_nonce_is_fresh_and_extends_client_nonce() -> None:
    nonces = set()
    for _ in range(2):
        mech = ScramSha256Mechanism(FACTS, SECRET)
        server_first = _to_server_first(mech, b"n,,n=user,r=abc", _known("pencil", "sha256"))
        nonce = server_first.data.decode().split(",")[0][2:]
        assert nonce.startswith("abc") and len(nonce) > len("abc") + 16
        nonces.add(nonce)
    assert len(nonces) == 2


# -- failures of the final message ------------------------------------------------------------


def test_scram_rejects_wrong_proof() -> None:
    mech = ScramSha256Mechanism(FACTS, SECRET)
    server_first = _to_server_first(mech, b"n,,n=user,r=abc", _known("pencil", "sha256"))
    final = _client_final("sha256", "pencil", "n=user,r=abc", server_first.data)
    without_proof, _, proof = final.decode().rpartition(",p=")
    flipped = bytearray(base64.b64decode(proof))
    flipped[0] ^= 1
    step = mech.respond(f"{without_proof},p={_b64(bytes(flipped))}".encode())
    _assert_failure(step, C.NOT_AUTHORIZED)


def test_scram_rejects_proof_of_wrong_length() -> None:
    mech = ScramSha256Mechanism(FACTS, SECRET)
    server_first = _to_server_first(mech, b"n,,n=user,r=abc", _known("pencil", "sha256"))
    nonce = server_first.data.decode().split(",")[0]
    step = mech.respond(f"c=biws,{nonce},p={_b64(b'short')}".encode())
    _assert_failure(step, C.NOT_AUTHORIZED)


def test_scram_rejects_wrong_nonce_in_client_final() -> None:
    mech = ScramSha256Mechanism(FACTS, SECRET)
    server_first = _to_server_first(mech, b"n,,n=user,r=abc", _known("pencil", "sha256"))
    # A correct proof over a different nonce: only the nonce check can refuse it.
    final = _client_final(
        "sha256", "pencil", "n=user,r=abc", server_first.data, nonce="abcSOMETHINGELSE"
    )
    _assert_failure(mech.respond(final), C.NOT_AUTHORIZED)


@pytest.mark.parametrize(
    "final",
    [
        b"c=bi*ws,r=abc,p=AAAA",  # c= not base64
        b"c=biws,r=abc,p=A",  # p= not base64 (bad padding)
    ],
)
def test_scram_rejects_malformed_base64_in_client_final(final: bytes) -> None:
    mech = ScramSha256Mechanism(FACTS, SECRET)
    _to_server_first(mech, b"n,,n=user,r=abc", _known("pencil", "sha256"))
    _assert_failure(mech.respond(final), C.INCORRECT_ENCODING)


@pytest.mark.parametrize(
    "final",
    [
        b"r=abc,c=biws,p=AAAA",  # attributes out of order
        b"c=biws,r=abc",  # no proof
        b"c=biws,p=AAAA",  # no nonce
        b"c=biws,r=abc,1=x,p=AAAA",  # malformed extension
        b"garbage",
    ],
)
def test_scram_rejects_malformed_client_final(final: bytes) -> None:
    mech = ScramSha256Mechanism(FACTS, SECRET)
    _to_server_first(mech, b"n,,n=user,r=abc", _known("pencil", "sha256"))
    _assert_failure(mech.respond(final), C.MALFORMED_REQUEST)


def test_scram_rejects_channel_binding_attribute_mismatch() -> None:
    # The client said "n,," but c= carries "y,," (as if a MITM rewrote the header).
    mech = ScramSha256Mechanism(FACTS, SECRET)
    server_first = _to_server_first(mech, b"n,,n=user,r=abc", _known("pencil", "sha256"))
    final = _client_final(
        "sha256", "pencil", "n=user,r=abc", server_first.data, channel_binding=b"y,,"
    )
    _assert_failure(mech.respond(final), C.NOT_AUTHORIZED)


def test_scram_rejects_second_client_final_after_success() -> None:
    mech = ScramSha256Mechanism(FACTS, SECRET)
    client = ScramClient(["SCRAM-SHA-256"], "user", "pencil")
    server_first = _to_server_first(
        mech, client.get_client_first().encode(), _known("pencil", "sha256")
    )
    client.set_server_first(server_first.data.decode())
    final = client.get_client_final().encode()
    assert isinstance(mech.respond(final), Success)
    _assert_failure(mech.respond(final), C.MALFORMED_REQUEST)


def test_scram_rejects_client_final_after_failure() -> None:
    mech = ScramSha256Mechanism(FACTS, SECRET)
    _, step = _run_scramp(mech, _known("pencil", "sha256"), "user", "wrong")
    _assert_failure(step, C.NOT_AUTHORIZED)
    _assert_failure(mech.respond(b"c=biws,r=abc,p=AAAA"), C.MALFORMED_REQUEST)


# -- unknown users ------------------------------------------------------------------------------


def test_scram_unknown_user_fails_like_wrong_password() -> None:
    unknown = ScramSha256Mechanism(FACTS, SECRET)
    _, unknown_step = _run_scramp(unknown, UNKNOWN, "nobody", "pencil")
    wrong = ScramSha256Mechanism(FACTS, SECRET)
    _, wrong_step = _run_scramp(wrong, _known("pencil", "sha256"), "user", "not pencil")
    assert isinstance(unknown_step, Failure) and isinstance(wrong_step, Failure)
    assert (unknown_step.condition, unknown_step.text) == (wrong_step.condition, wrong_step.text)
    assert unknown_step.condition is C.NOT_AUTHORIZED


def test_scram_unknown_user_gets_stable_realistic_salt() -> None:
    def server_first(username: str, secret: bytes = SECRET) -> dict[str, str]:
        mech = ScramSha256Mechanism(FACTS, secret)
        challenge = _to_server_first(mech, f"n,,n={username},r=abc".encode(), UNKNOWN)
        return dict(a.split("=", 1) for a in challenge.data.decode().split(","))

    first, again = server_first("nobody"), server_first("nobody")
    # Deterministic: a probing client sees the same salt every time, as for a real user.
    assert first["s"] == again["s"]
    # Shaped like a real credential from derive_scram_keys: 16-byte salt, 4096 iterations.
    assert len(base64.b64decode(first["s"])) == 16
    assert first["i"] == "4096"
    assert server_first("someone-else")["s"] != first["s"]
    assert server_first("nobody", b"another secret")["s"] != first["s"]


def test_scram_unknown_user_salt_differs_per_hash() -> None:
    salts = set()
    for cls in MECHANISMS.values():
        challenge = _to_server_first(cls(FACTS, SECRET), b"n,,n=nobody,r=abc", UNKNOWN)
        salts.add(challenge.data.decode().split(",")[1])
    assert len(salts) == 3


def test_scram_provider_unavailable_fails_temporarily() -> None:
    mech = ScramSha256Mechanism(FACTS, SECRET)
    assert isinstance(mech.start(b"n,,n=user,r=abc"), NeedCredentials)
    step = mech.resume(CredentialAnswer(temporary_failure=True))
    failure = _assert_failure(step, C.TEMPORARY_AUTH_FAILURE)
    assert failure.username == "user"


# -- authzid -------------------------------------------------------------------------------------


@pytest.mark.parametrize("authzid", ["user@example.com", "User@EXAMPLE.COM"])
def test_scram_accepts_authzid_of_own_bare_jid(authzid: str) -> None:
    mech = ScramSha256Mechanism(FACTS, SECRET)
    gs2 = f"n,a={authzid},"
    server_first = _to_server_first(mech, f"{gs2}n=user,r=abc".encode(), _known("pencil", "sha256"))
    final = _client_final(
        "sha256", "pencil", "n=user,r=abc", server_first.data, channel_binding=gs2.encode()
    )
    step = mech.respond(final)
    assert isinstance(step, Success), step
    assert step.authzid == "user@example.com"


@pytest.mark.parametrize(
    "authzid", ["admin@example.com", "user@example.org", "user@example.com/res", "example.com"]
)
def test_scram_rejects_authzid_mismatch(authzid: str) -> None:
    mech = ScramSha256Mechanism(FACTS, SECRET)
    gs2 = f"n,a={authzid},"
    server_first = _to_server_first(mech, f"{gs2}n=user,r=abc".encode(), _known("pencil", "sha256"))
    final = _client_final(
        "sha256", "pencil", "n=user,r=abc", server_first.data, channel_binding=gs2.encode()
    )
    _assert_failure(mech.respond(final), C.INVALID_AUTHZID)


def test_scram_checks_proof_before_authzid() -> None:
    mech = ScramSha256Mechanism(FACTS, SECRET)
    gs2 = "n,a=admin@example.com,"
    server_first = _to_server_first(mech, f"{gs2}n=user,r=abc".encode(), _known("pencil", "sha256"))
    final = _client_final(
        "sha256", "wrong", "n=user,r=abc", server_first.data, channel_binding=gs2.encode()
    )
    _assert_failure(mech.respond(final), C.NOT_AUTHORIZED)


def test_scram_decodes_escaped_authzid() -> None:
    # "=2C" is "," and "=3D" is "=" (RFC 5802 §5.1); the decoded authzid is no JID here.
    mech = ScramSha256Mechanism(FACTS, SECRET)
    gs2 = "n,a=user=2C=3D@example.com,"
    server_first = _to_server_first(mech, f"{gs2}n=user,r=abc".encode(), _known("pencil", "sha256"))
    final = _client_final(
        "sha256", "pencil", "n=user,r=abc", server_first.data, channel_binding=gs2.encode()
    )
    _assert_failure(mech.respond(final), C.INVALID_AUTHZID)


# -- client-first syntax ------------------------------------------------------------------------------


def test_scram_decodes_escaped_username() -> None:
    step = ScramSha256Mechanism(FACTS, SECRET).start(b"n,,n=a=2Cb=3Dc,r=abc")
    assert step == NeedCredentials(Capability.SCRAM_SHA_256_KEYS, "a,b=c")


def test_scram_prepares_username_with_usernamecasemapped() -> None:
    step = ScramSha256Mechanism(FACTS, SECRET).start("n,,n=J\uff35LIET,r=abc".encode())
    assert step == NeedCredentials(Capability.SCRAM_SHA_256_KEYS, "juliet")


def test_scram_ignores_unknown_optional_extension() -> None:
    step = ScramSha256Mechanism(FACTS, SECRET).start(b"n,,n=user,r=abc,x=whatever")
    assert step == NeedCredentials(Capability.SCRAM_SHA_256_KEYS, "user")


@pytest.mark.parametrize(
    "client_first",
    [
        b"",  # empty initial response ("=" on the wire)
        b"n=user,r=abc",  # no GS2 header
        b"x,,n=user,r=abc",  # unknown channel-binding flag
        b"n,n=user,r=abc",  # only one comma before the bare message
        b"n,b=user,n=user,r=abc",  # authzid without "a="
        b"n,a=,n=user,r=abc",  # empty authzid
        b"n,a=x=41,n=user,r=abc",  # bad escape in authzid
        b"p=bad name,,n=user,r=abc",  # invalid cb-name
        b"n,,n=user",  # missing nonce
        b"n,,n=user,r=",  # empty nonce
        b"n,,n=user,r=a\x01b",  # non-printable nonce
        b"n,,r=abc,n=user",  # attributes out of order
        b"n,,n=,r=abc",  # empty username
        b"n,,n=a=41,r=abc",  # "=" not followed by 2C or 3D
        b"n,,n=user,r=abc,1=x",  # malformed extension
        b"n,,n=us\x00er,r=abc",  # NUL
    ],
)
def test_scram_rejects_malformed_client_first(client_first: bytes) -> None:
    step = ScramSha256Mechanism(FACTS, SECRET).start(client_first)
    _assert_failure(step, C.MALFORMED_REQUEST)


def test_scram_rejects_mandatory_extension() -> None:
    # RFC 5802 §5.1 m: "its presence ... MUST cause authentication failure".
    step = ScramSha256Mechanism(FACTS, SECRET).start(b"n,,m=ext,n=user,r=abc")
    _assert_failure(step, C.MALFORMED_REQUEST)


@pytest.mark.parametrize("username", [b"a b", b"a@b", b"a:b", b"\xe2\x82\xac"])
def test_scram_rejects_username_that_fails_preparation(username: bytes) -> None:
    step = ScramSha256Mechanism(FACTS, SECRET).start(b"n,,n=" + username + b",r=abc")
    _assert_failure(step, C.MALFORMED_REQUEST)


def test_scram_rejects_client_first_that_is_not_utf8() -> None:
    step = ScramSha256Mechanism(FACTS, SECRET).start(b"n,,n=\xff\xfe,r=abc")
    _assert_failure(step, C.INCORRECT_ENCODING)


# -- channel-binding flags (RFC 5802 §6) ------------------------------------------------------------


def test_scram_accepts_y_flag_when_plus_not_offered() -> None:
    mech = ScramSha256Mechanism(FACTS, SECRET, plus_offered=False)
    client = ScramClient(
        ["SCRAM-SHA-256"], "user", "pencil", channel_binding=("tls-server-end-point", b"cb")
    )
    first = client.get_client_first()
    assert first.startswith("y,,")
    server_first = _to_server_first(mech, first.encode(), _known("pencil", "sha256"))
    client.set_server_first(server_first.data.decode())
    assert isinstance(mech.respond(client.get_client_final().encode()), Success)


def test_scram_rejects_y_flag_when_plus_offered_as_downgrade() -> None:
    step = ScramSha256Mechanism(FACTS, SECRET, plus_offered=True).start(b"y,,n=user,r=abc")
    _assert_failure(step, C.NOT_AUTHORIZED)


def test_scram_accepts_n_flag_when_plus_offered() -> None:
    # "n": the client does not support channel binding at all; no downgrade.
    step = ScramSha256Mechanism(FACTS, SECRET, plus_offered=True).start(b"n,,n=user,r=abc")
    assert isinstance(step, NeedCredentials)


def test_scram_rejects_p_flag_on_non_plus_mechanism() -> None:
    facts = ConnectionFacts(domain="example.com", channel_bindings={"tls-exporter": b"x"})
    step = ScramSha256Mechanism(facts, SECRET).start(b"p=tls-exporter,,n=user,r=abc")
    _assert_failure(step, C.MALFORMED_REQUEST)


class _ScramSha256PlusForTest(ScramMechanism):
    """What a -PLUS variant will look like: class attributes only."""

    name: ClassVar[str] = "SCRAM-SHA-256-PLUS"
    hash_name: ClassVar[str] = "sha256"
    needs: ClassVar[frozenset[Capability]] = frozenset({Capability.SCRAM_SHA_256_KEYS})
    requires_channel_binding: ClassVar[bool] = True


def test_scram_plus_subclass_binds_channel_data_with_scramp() -> None:
    data = b"end-point hash"
    facts = ConnectionFacts(domain="example.com", channel_bindings={"tls-server-end-point": data})
    mech = _ScramSha256PlusForTest(facts, SECRET, plus_offered=True)
    client = ScramClient(
        ["SCRAM-SHA-256-PLUS"], "user", "pencil", channel_binding=("tls-server-end-point", data)
    )
    _, step = _run_scramp_with(mech, client)
    assert isinstance(step, Success), step


def test_scram_plus_subclass_rejects_other_channel_data() -> None:
    facts = ConnectionFacts(
        domain="example.com", channel_bindings={"tls-server-end-point": b"server view"}
    )
    mech = _ScramSha256PlusForTest(facts, SECRET, plus_offered=True)
    client = ScramClient(
        ["SCRAM-SHA-256-PLUS"],
        "user",
        "pencil",
        channel_binding=("tls-server-end-point", b"client view (MITM)"),
    )
    _, step = _run_scramp_with(mech, client)
    _assert_failure(step, C.NOT_AUTHORIZED)


@pytest.mark.parametrize("client_first", [b"n,,n=user,r=abc", b"p=tls-unique,,n=user,r=abc"])
def test_scram_plus_subclass_requires_a_binding_the_connection_has(client_first: bytes) -> None:
    facts = ConnectionFacts(domain="example.com", channel_bindings={"tls-server-end-point": b"x"})
    step = _ScramSha256PlusForTest(facts, SECRET, plus_offered=True).start(client_first)
    _assert_failure(step, C.MALFORMED_REQUEST)


def _run_scramp_with(mech: ScramMechanism, client: ScramClient) -> tuple[ScramClient, Step]:
    server_first = _to_server_first(
        mech, client.get_client_first().encode(), _known("pencil", "sha256")
    )
    client.set_server_first(server_first.data.decode())
    return client, mech.respond(client.get_client_final().encode())


# -- declarations and misuse ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "name", "capability"),
    [
        (ScramSha1Mechanism, "SCRAM-SHA-1", Capability.SCRAM_SHA_1_KEYS),
        (ScramSha256Mechanism, "SCRAM-SHA-256", Capability.SCRAM_SHA_256_KEYS),
        (ScramSha512Mechanism, "SCRAM-SHA-512", Capability.SCRAM_SHA_512_KEYS),
    ],
)
def test_scram_declares_name_and_needs(
    cls: type[ScramMechanism], name: str, capability: Capability
) -> None:
    assert cls.name == name
    assert cls.needs == frozenset({capability})
    assert cls.plaintext is False
    assert cls.requires_channel_binding is False


def test_scram_refuses_keys_for_another_hash() -> None:
    mech = ScramSha256Mechanism(FACTS, SECRET)
    mech.start(b"n,,n=user,r=abc")
    with pytest.raises(ValueError, match="sha1"):
        mech.resume(_known("pencil", "sha1"))


def test_scram_resume_without_request_is_a_programming_error() -> None:
    mech = ScramSha256Mechanism(FACTS, SECRET)
    mech.start(None)
    with pytest.raises(ValueError):
        mech.resume(UNKNOWN)


def test_scram_base_class_needs_a_hash() -> None:
    with pytest.raises(TypeError):
        ScramMechanism(FACTS, SECRET)
