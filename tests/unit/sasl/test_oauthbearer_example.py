"""The example third-party mechanism in examples/sasl-plugin (OAUTHBEARER, RFC 7628).

The mechanism is driven step by step with transcripts (good token, refused token,
unknown user, malformed messages, misuse), with RFC 7628 §4.1's published
message, then through the real negotiation core on the wire in the three feeding
modes.  The packaging and docs/sasl-plugins.md are checked against the example
so none of them drifts; tests/e2e/test_sasl_plugin.py installs the package for
real and logs in through a running server.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from chatgate.auth.provider import Capability
from chatgate.auth.throttle import counts_as_guess
from chatgate.registry import Registry
from chatgate.sasl.base import (
    Challenge,
    ConnectionFacts,
    CredentialAnswer,
    Failure,
    Mechanism,
    NeedCredentials,
    Step,
    Success,
)
from chatgate.sasl.registry import ENTRY_POINT_GROUP, MechanismFactory
from chatgate.sasl.selection import offered_mechanisms, validate_mechanism_names
from chatgate.vocabulary.errors import SaslFailureCondition as C
from chatgate.vocabulary.errors import StreamErrorCondition
from chatgate.xmpp import negotiation as neg
from tests.unit.xmpp.transcript import HEADER, SECRET, Harness

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "sasl-plugin"
MODULE_PATH = EXAMPLE / "src" / "chatgate_sasl_oauthbearer.py"
DOC = ROOT / "docs" / "sasl-plugins.md"


def _load_example() -> ModuleType:
    """Import the example module from its source file (it is not installed here)."""
    name = "chatgate_sasl_oauthbearer"
    spec = importlib.util.spec_from_file_location(name, MODULE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


example = _load_example()
OAuthBearerMechanism = example.OAuthBearerMechanism

FACTS = ConnectionFacts(domain="example.com", tls_active=True)
ACCEPTED = CredentialAnswer(verified=True)
REFUSED = CredentialAnswer(verified=False)
UNKNOWN_USER = CredentialAnswer()  # what the driver answers for an unknown user
ERROR_RESULT = Challenge(b'{"status":"invalid_token"}')

# RFC 7628 §4.1, the initial client response of the IMAP example, verbatim.
RFC7628_MESSAGE = base64.b64decode(
    "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9"
    "QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
)
RFC7628_TOKEN = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="


def _message(authzid: str = "juliet@example.com", *pairs: str) -> bytes:
    """``n,a=AUTHZID,^A`` + each pair + ``^A`` ... ``^A``; default pair: a bearer token."""
    body = "".join(pair + "\x01" for pair in (pairs or ("auth=Bearer tok3n",)))
    return f"n,a={authzid},\x01{body}\x01".encode()


def _mech(facts: ConnectionFacts = FACTS) -> Mechanism:
    return OAuthBearerMechanism(facts, b"secret", False)


# A transcript: (call, argument, expected step); call is "start", "respond" or "resume".
Transcript = Sequence[tuple[str, Any, Step]]


def _play(transcript: Transcript, mech: Mechanism | None = None) -> None:
    mech = mech if mech is not None else _mech()
    for call, argument, expected in transcript:
        assert getattr(mech, call)(argument) == expected, (call, argument)


def _assert_failure(step: Step, condition: C) -> Failure:
    assert isinstance(step, Failure), step
    assert step.condition is condition, step
    return step


# ---------------------------------------------------------------- declarations


def test_oauthbearer_declares_wire_name_needs_and_plaintext() -> None:
    assert OAuthBearerMechanism.name == "OAUTHBEARER"
    assert OAuthBearerMechanism.needs == frozenset({Capability.VERIFY_PASSWORD})
    assert OAuthBearerMechanism.plaintext is True  # RFC 7628 §3: TLS MUST be used
    assert OAuthBearerMechanism.requires_channel_binding is False
    assert OAuthBearerMechanism.requires_peer_certificate is False


# ---------------------------------------------------------------- transcripts


def test_oauthbearer_asks_provider_about_rfc7628_example_token() -> None:
    step = _mech().start(RFC7628_MESSAGE)
    assert step == NeedCredentials(Capability.VERIFY_PASSWORD, "user", password=RFC7628_TOKEN)


def test_oauthbearer_succeeds_when_provider_accepts_token() -> None:
    _play(
        [
            (
                "start",
                RFC7628_MESSAGE,
                NeedCredentials(Capability.VERIFY_PASSWORD, "user", RFC7628_TOKEN),
            ),
            ("resume", ACCEPTED, Success("user", authzid="user@example.com")),
        ]
    )


def test_oauthbearer_refused_token_gets_error_result_then_not_authorized() -> None:
    # RFC 7628 §3.2.2-§3.2.3: error result in a challenge, the client's %x01, failure.
    _play(
        [
            ("start", _message(), NeedCredentials(Capability.VERIFY_PASSWORD, "juliet", "tok3n")),
            ("resume", REFUSED, ERROR_RESULT),
            ("respond", b"\x01", Failure(C.NOT_AUTHORIZED, "", "juliet")),
        ]
    )
    assert json.loads(ERROR_RESULT.data) == {"status": "invalid_token"}


def test_oauthbearer_unknown_user_is_answered_like_a_refused_token() -> None:
    _play(
        [
            ("start", _message(), NeedCredentials(Capability.VERIFY_PASSWORD, "juliet", "tok3n")),
            ("resume", UNKNOWN_USER, ERROR_RESULT),
            ("respond", b"\x01", Failure(C.NOT_AUTHORIZED, "", "juliet")),
        ]
    )


@pytest.mark.parametrize("response", [b"", b"\x01\x01", _message(), b"\xff"])
def test_oauthbearer_any_response_to_error_result_is_not_authorized(response: bytes) -> None:
    # Not malformed-request: a refused token must stay a counted guess.
    mech = _mech()
    mech.start(_message())
    assert mech.resume(REFUSED) == ERROR_RESULT
    failure = _assert_failure(mech.respond(response), C.NOT_AUTHORIZED)
    assert failure.username == "juliet"


def test_oauthbearer_without_initial_response_sends_empty_challenge() -> None:
    # RFC 6120 §6.4.2: the message then arrives as the response.
    _play(
        [
            ("start", None, Challenge(b"")),
            ("respond", _message(), NeedCredentials(Capability.VERIFY_PASSWORD, "juliet", "tok3n")),
            ("resume", ACCEPTED, Success("juliet", authzid="juliet@example.com")),
        ]
    )


def test_oauthbearer_unavailable_provider_is_temporary_auth_failure() -> None:
    mech = _mech()
    mech.start(_message())
    failure = _assert_failure(
        mech.resume(CredentialAnswer(temporary_failure=True)), C.TEMPORARY_AUTH_FAILURE
    )
    assert failure.username == "juliet"


@pytest.mark.parametrize(
    ("message", "username", "token"),
    [
        (_message("JULIET@Example.COM"), "juliet", "tok3n"),  # prepared (RFC 7622)
        (_message("jul=2Ciet=3D@example.com"), "jul,iet=", "tok3n"),  # saslname escapes
        (_message("juliet@example.com", "auth=bearer  abc-._~+/=="), "juliet", "abc-._~+/=="),
        (
            _message(
                "juliet@example.com", "host=xmpp.example.com", "port=5222", "x=", "auth=Bearer t"
            ),
            "juliet",
            "t",
        ),
        (b"y,a=juliet@example.com,\x01auth=Bearer t\x01\x01", "juliet", "t"),  # no -PLUS variant
    ],
)
def test_oauthbearer_accepts_message_variants(message: bytes, username: str, token: str) -> None:
    step = _mech().start(message)
    assert step == NeedCredentials(Capability.VERIFY_PASSWORD, username, password=token)


@pytest.mark.parametrize(
    "message",
    [
        b"",  # empty initial response ("=" on the wire)
        b"\x01",  # a lone kvsep: only valid after an error result (RFC 7628 §3.1)
        b"n,a=juliet@example.com,\x01auth=Bearer t\x01",  # the closing kvsep is missing
        b"n,a=juliet@example.com,auth=Bearer t\x01\x01",  # no kvsep after the GS2 header
        b"n,,\x01auth=Bearer t\x01\x01",  # no authzid: no account to ask about
        b"n,a=juliet@example.com\x01auth=Bearer t\x01\x01",  # GS2 header lacks its final ","
        b"p=tls-unique,a=juliet@example.com,\x01auth=Bearer t\x01\x01",  # channel binding
        b"F,n,a=juliet@example.com,\x01auth=Bearer t\x01\x01",  # GS2 non-standard flag
        b"x,a=juliet@example.com,\x01auth=Bearer t\x01\x01",  # unknown cb flag
        b"n,u=juliet@example.com,\x01auth=Bearer t\x01\x01",  # not "a="
        b"n,a=,\x01auth=Bearer t\x01\x01",  # empty saslname
        b"n,a=jul=iet@example.com,\x01auth=Bearer t\x01\x01",  # "=" not escaped
        _message("juliet@example.com", "host=example.com"),  # no auth
        _message("juliet@example.com", "auth=Basic anVsaWV0OnB3"),  # not a bearer token
        _message("juliet@example.com", "auth=Bearer"),  # no token
        _message("juliet@example.com", "auth=Bearer t o"),  # not a b64token
        _message("juliet@example.com", "auth=Bearer t=x"),  # "=" only at the end
        _message("juliet@example.com", "auth=Bearer a", "auth=Bearer b"),  # twice
        _message("juliet@example.com", "auth=Bearer t", "au-th=x"),  # key is ALPHA only
        _message("juliet@example.com", "auth=Bearer t", "=x"),  # empty key
        _message("juliet@example.com", "auth=Bearer t", "noequals"),
        _message("juliet@example.com", "auth=Bearer t", "k=\x02"),  # value: VCHAR/SP/...
        _message("juliet@example.com", "auth=Bearer t", ""),  # an extra kvsep
        _message("a b@example.com"),  # not a valid localpart
        _message("juliet@exa mple.com"),  # not a valid domain
    ],
)
def test_oauthbearer_rejects_malformed_message(message: bytes) -> None:
    failure = _assert_failure(_mech().start(message), C.MALFORMED_REQUEST)
    assert failure.text


def test_oauthbearer_rejects_bytes_that_are_not_utf8_as_incorrect_encoding() -> None:
    _assert_failure(_mech().start(_message() + b"\xff"), C.INCORRECT_ENCODING)


@pytest.mark.parametrize(
    "authzid",
    ["juliet@example.org", "juliet@example.com/balcony", "example.com"],
)
def test_oauthbearer_authzid_must_be_a_bare_jid_of_this_domain(authzid: str) -> None:
    _assert_failure(_mech().start(_message(authzid)), C.INVALID_AUTHZID)


def test_oauthbearer_misuse_raises_and_late_response_fails() -> None:
    mech = _mech()
    with pytest.raises(ValueError):
        mech.respond(b"x")  # before start()
    with pytest.raises(ValueError):
        mech.resume(ACCEPTED)  # nothing asked
    mech.start(_message())
    with pytest.raises(ValueError):
        mech.start(_message())
    with pytest.raises(ValueError):
        mech.respond(b"x")  # the verdict is pending
    assert isinstance(mech.resume(ACCEPTED), Success)
    _assert_failure(mech.respond(b"x"), C.MALFORMED_REQUEST)


# ---------------------------------------------------------------- registration and selection


def _project() -> dict[str, Any]:
    return tomllib.loads((EXAMPLE / "pyproject.toml").read_text())


def test_entry_point_is_named_after_the_wire_name_of_what_it_loads() -> None:
    entry_points = _project()["project"]["entry-points"][ENTRY_POINT_GROUP]
    assert entry_points == {"OAUTHBEARER": "chatgate_sasl_oauthbearer:OAuthBearerMechanism"}
    module, _, attribute = entry_points["OAUTHBEARER"].partition(":")
    assert getattr(sys.modules[module], attribute).name == "OAUTHBEARER"


def _registry() -> Registry[MechanismFactory]:
    registry: Registry[MechanismFactory] = Registry("SASL mechanism")
    registry.register("SCRAM-SHA-256", _builtin("SCRAM-SHA-256"))
    registry.register("OAUTHBEARER", OAuthBearerMechanism)
    return registry


def _builtin(name: str) -> MechanismFactory:
    from chatgate.sasl.registry import builtin_mechanisms

    return builtin_mechanisms(load_entry_points=False).get(name)


@pytest.mark.parametrize(
    ("offers", "tls", "expected"),
    [
        (frozenset(Capability), True, ["SCRAM-SHA-256", "OAUTHBEARER"]),
        (frozenset(Capability), False, ["SCRAM-SHA-256"]),  # a bearer token needs TLS
        (frozenset({Capability.SCRAM_SHA_256_KEYS}), True, ["SCRAM-SHA-256"]),  # no verdicts
    ],
)
def test_oauthbearer_is_offered_after_tls_by_providers_that_verify_passwords(
    offers: frozenset[Capability], tls: bool, expected: list[str]
) -> None:
    configured = ["SCRAM-SHA-256", "OAUTHBEARER"]
    validate_mechanism_names(configured, _registry())
    facts = ConnectionFacts(domain="example.com", tls_active=tls)
    offered = offered_mechanisms(
        configured, _registry(), offers, facts, allow_plaintext_without_tls=False
    )
    assert offered == expected


# ---------------------------------------------------------------- on the wire


@pytest.fixture(params=["whole", "bytewise", "random"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _wire(mode: str) -> Harness:
    """The real negotiation core past STARTTLS, offering SCRAM-SHA-256 and OAUTHBEARER;
    the harness's provider accepts juliet's password "tok3n" as her token."""
    registry = _registry()

    def offered(facts: ConnectionFacts) -> list[str]:
        names = ["SCRAM-SHA-256", "OAUTHBEARER"]
        return offered_mechanisms(
            names, registry, frozenset(Capability), facts, allow_plaintext_without_tls=False
        )

    def make(name: str, facts: ConnectionFacts) -> Mechanism:
        return registry.get(name)(facts, SECRET, False)

    settings = neg.NegotiationSettings(
        domain="localhost",
        starttls_available=True,
        require_tls=True,
        offered_mechanisms=offered,
        make_mechanism=make,
    )
    h = Harness(settings, mode)
    h.add_user("juliet", "tok3n")
    h.client(HEADER)
    h.client("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    h.tls_established()
    features = h.client(HEADER)
    assert "<mechanism>OAUTHBEARER</mechanism>" in features
    return h


AUTH = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='OAUTHBEARER'>{}</auth>"
RESPONSE = "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>"
ABORT = "<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
GOOD = _b64(_message("juliet@localhost", "auth=Bearer tok3n"))
WRONG = _b64(_message("juliet@localhost", "auth=Bearer wr0ng"))


def test_oauthbearer_login_on_the_wire(mode: str) -> None:
    h = _wire(mode)
    out = h.client(AUTH.format(GOOD))
    assert out == "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'></success>"
    assert any(isinstance(a, neg.Authenticated) and a.username == "juliet" for a in h.actions)


def test_oauthbearer_without_initial_response_on_the_wire(mode: str) -> None:
    h = _wire(mode)
    # An empty challenge: zero-length data, written "=" (RFC 6120 §6.4.2's notation).
    assert h.client(AUTH.format("")) == (
        "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>=</challenge>"
    )
    assert "<success" in h.client(RESPONSE.format(GOOD))


def test_oauthbearer_refused_token_on_the_wire(mode: str) -> None:
    h = _wire(mode)
    out = h.client(AUTH.format(WRONG))
    challenge = re.fullmatch(
        r"<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>(.+)</challenge>", out
    )
    assert challenge, out
    assert json.loads(base64.b64decode(challenge.group(1))) == {"status": "invalid_token"}
    out = h.client(RESPONSE.format("AQ=="))  # RFC 7628 §4.3: "AQ==" is the %x01
    assert out == "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>"
    failed = [a for a in h.actions if isinstance(a, neg.AuthFailed)]
    assert [(f.condition, f.username) for f in failed] == [(C.NOT_AUTHORIZED, "juliet")]
    assert h.closed is None


def test_oauthbearer_three_refused_tokens_close_the_stream(mode: str) -> None:
    h = _wire(mode)
    for _ in range(3):
        h.client(AUTH.format(WRONG))
        h.client(RESPONSE.format("AQ=="))
    assert h.closed is not None
    assert h.closed.condition is StreamErrorCondition.POLICY_VIOLATION


def test_oauthbearer_malformed_message_on_the_wire(mode: str) -> None:
    h = _wire(mode)
    out = h.client(AUTH.format(_b64(b"n,,\x01auth=Bearer tok3n\x01\x01")))
    assert out.startswith(
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><malformed-request/><text"
    ), out


@pytest.mark.parametrize("ending", [ABORT, RESPONSE.format("!!")])
def test_refused_token_ended_without_acknowledgement_counts_as_guess(ending: str) -> None:
    h = _wire("whole")
    assert "<challenge" in h.client(AUTH.format(WRONG))
    h.client(ending)
    failed = [a for a in h.actions if isinstance(a, neg.AuthFailed)]
    assert [(counts_as_guess(f.condition), f.username) for f in failed] == [(True, "juliet")]


# ---------------------------------------------------------------- the documentation


_VERBATIM = re.compile(r"<!-- verbatim: (\S+) -->\n```[a-z]*\n(.*?)\n```", re.S)


def test_doc_shows_the_example_verbatim() -> None:
    doc = DOC.read_text()
    snippets = _VERBATIM.findall(doc)
    assert {path for path, _code in snippets} == {
        "examples/sasl-plugin/pyproject.toml",
        "examples/sasl-plugin/src/chatgate_sasl_oauthbearer.py",
        "tests/unit/sasl/test_oauthbearer_example.py",
    }
    for path, code in snippets:
        assert code in (ROOT / path).read_text(), (
            f"docs/sasl-plugins.md differs from {path}:\n{code}"
        )
    # Every Python and TOML block taken from a file says so: none goes stale unnoticed.
    python_blocks = re.findall(r"```python\n", doc)
    assert len(python_blocks) == sum(path.endswith(".py") for path, _code in snippets)
