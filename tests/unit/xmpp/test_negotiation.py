"""The c2s negotiation core driven by transcripts (RFC 6120 §4-§7), in three feeding modes."""

from __future__ import annotations

import base64
import re

import pytest
from scramp import ScramClient

from chatgate.vocabulary.errors import StreamErrorCondition
from chatgate.xmpp import negotiation as neg

from .transcript import HEADER, Harness, settings


@pytest.fixture(params=["whole", "bytewise", "random"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


PLAIN_OK = base64.b64encode(b"\0alice\0wonderland").decode()
PLAIN_WRONG = base64.b64encode(b"\0alice\0nope").decode()
PLAIN_UNKNOWN = base64.b64encode(b"\0mallory\0nope").decode()


def condition_of(h: Harness) -> StreamErrorCondition | None:
    assert h.closed is not None, "the stream should have been closed"
    return h.closed.condition


def tls_ready(mode: str, **kw) -> Harness:  # type: ignore[no-untyped-def]
    """A harness past STARTTLS, with the post-TLS features read."""
    h = Harness(settings(**kw), mode)
    h.add_user("alice", "wonderland")
    h.client(HEADER)
    assert "<proceed" in h.client("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    h.tls_established()
    h.client(HEADER)
    return h


def test_header_gets_our_header_and_only_starttls_when_tls_required(mode: str) -> None:
    h = Harness(settings(), mode)
    out = h.client(HEADER)
    assert out.startswith("<?xml version='1.0'?><stream:stream ")
    assert 'from="localhost"' in out and "version='1.0'" in out
    assert re.search(r' id="[^"]{8,}"', out)
    assert "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>" in out
    # RFC 6120 §5.3.1: with TLS mandatory-to-negotiate, no mechanisms before it.
    assert "<mechanisms" not in out
    assert h.closed is None


def test_wrong_stream_namespace_is_invalid_namespace(mode: str) -> None:
    h = Harness(settings(), mode)
    out = h.client(
        "<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong' to='localhost' version='1.0'>"
    )
    assert out.startswith("<?xml")  # §4.9.1.2: our header comes first
    assert condition_of(h) is StreamErrorCondition.INVALID_NAMESPACE


def test_wrong_content_namespace_is_invalid_namespace(mode: str) -> None:
    h = Harness(settings(), mode)
    h.client(HEADER.replace("jabber:client", "jabber:server"))
    assert condition_of(h) is StreamErrorCondition.INVALID_NAMESPACE


def test_unknown_host_is_host_unknown(mode: str) -> None:
    h = Harness(settings(), mode)
    h.client(HEADER.replace("to='localhost'", "to='example.org'"))
    assert condition_of(h) is StreamErrorCondition.HOST_UNKNOWN


def test_missing_version_is_unsupported_version(mode: str) -> None:
    h = Harness(settings(), mode)
    h.client(HEADER.replace("to='localhost' version='1.0'", "to='localhost'"))
    assert condition_of(h) is StreamErrorCondition.UNSUPPORTED_VERSION


def test_stanza_before_authentication_is_not_authorized(mode: str) -> None:
    h = Harness(settings(require_tls=False), mode)
    h.client(HEADER)
    h.client("<message to='bob@localhost'><body>hi</body></message>")
    assert condition_of(h) is StreamErrorCondition.NOT_AUTHORIZED


def test_auth_before_required_tls_is_encryption_required(mode: str) -> None:
    h = Harness(settings(), mode)
    h.client(HEADER)
    out = h.client(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHg=</auth>"
    )
    assert "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><encryption-required/>" in out
    assert h.closed is None


def test_starttls_proceeds_and_the_stream_restarts_with_mechanisms_in_config_order(
    mode: str,
) -> None:
    h = Harness(settings(), mode)
    h.client(HEADER)
    out = h.client("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    assert out == "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    assert any(isinstance(a, neg.StartTls) for a in h.actions)
    h.tls_established()
    assert isinstance(h.actions[-1], neg.ResetParser)
    assert "<mechanism>SCRAM-SHA-512</mechanism>" in h.client(HEADER)


def test_mechanisms_after_tls_follow_configuration_order(mode: str) -> None:
    h = Harness(settings(mechanisms=("SCRAM-SHA-1", "PLAIN", "SCRAM-SHA-256")), mode)
    h.client(HEADER)
    h.client("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    h.tls_established()
    out = h.client(HEADER)
    names = re.findall(r"<mechanism>([^<]+)</mechanism>", out)
    assert names == ["SCRAM-SHA-1", "PLAIN", "SCRAM-SHA-256"]
    assert "<starttls" not in out


def test_plain_is_hidden_before_tls_unless_allowed(mode: str) -> None:
    hidden = Harness(settings(starttls=False, require_tls=False), mode)
    out = hidden.client(HEADER)
    assert "<mechanism>SCRAM-SHA-1</mechanism>" in out and "PLAIN" not in out
    allowed = Harness(
        settings(starttls=False, require_tls=False, allow_plain_without_tls=True), mode
    )
    assert "<mechanism>PLAIN</mechanism>" in allowed.client(HEADER)


def test_unknown_mechanism_is_invalid_mechanism(mode: str) -> None:
    h = tls_ready(mode)
    out = h.client("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X-MAGIC'/>")
    assert "<invalid-mechanism/>" in out


def test_bad_base64_is_incorrect_encoding(mode: str) -> None:
    h = tls_ready(mode)
    out = h.client(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>!!notbase64</auth>"
    )
    assert "<incorrect-encoding/>" in out


def test_plain_login_then_bind(mode: str) -> None:
    h = tls_ready(mode)
    out = h.client(
        f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{PLAIN_OK}</auth>"
    )
    assert out == "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'></success>"
    assert any(isinstance(a, neg.Authenticated) and a.username == "alice" for a in h.actions)
    out = h.client(HEADER)
    assert "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>" in out
    assert "<mechanisms" not in out
    h.client(
        "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>home</resource></bind></iq>"
    )
    request = h.actions[-1]
    assert isinstance(request, neg.BindRequested) and request.resource == "home"
    actions = h.core.bound("home", "alice@localhost/home", "b1")
    assert isinstance(actions[0], neg.Send) and "<jid>alice@localhost/home</jid>" in actions[0].text
    assert h.core.state is neg.State.ESTABLISHED


def test_wrong_password_is_not_authorized_and_the_stream_stays(mode: str) -> None:
    h = tls_ready(mode)
    out = h.client(
        f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{PLAIN_WRONG}</auth>"
    )
    assert "<not-authorized/>" in out
    assert h.closed is None


def test_unknown_user_fails_exactly_like_a_wrong_password(mode: str) -> None:
    h = tls_ready(mode)
    wrong = h.client(
        f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{PLAIN_WRONG}</auth>"
    )
    unknown = h.client(
        f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{PLAIN_UNKNOWN}</auth>"
    )
    assert wrong == unknown


def test_three_failures_close_the_stream_with_policy_violation(mode: str) -> None:
    h = tls_ready(mode)
    for _ in range(3):
        h.client(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{PLAIN_WRONG}</auth>"
        )
    assert condition_of(h) is StreamErrorCondition.POLICY_VIOLATION


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_login_with_an_independent_client(mode: str, mechanism: str) -> None:
    h = tls_ready(mode)
    client = ScramClient([mechanism], "alice", "wonderland")
    out = h.client(
        f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mechanism}'>"
        f"{b64(client.get_client_first().encode())}</auth>"
    )
    challenge = re.fullmatch(
        r"<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>([^<]+)</challenge>", out
    )
    assert challenge, out
    client.set_server_first(base64.b64decode(challenge.group(1)).decode())
    out = h.client(
        f"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{b64(client.get_client_final().encode())}</response>"
    )
    success = re.fullmatch(
        r"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>([^<]+)</success>", out
    )
    assert success, out
    client.set_server_final(
        base64.b64decode(success.group(1)).decode()
    )  # verifies the server signature


def test_abort_returns_aborted_and_allows_a_new_attempt(mode: str) -> None:
    h = tls_ready(mode)
    client = ScramClient(["SCRAM-SHA-1"], "alice", "wonderland")
    h.client(
        f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>{b64(client.get_client_first().encode())}</auth>"
    )
    assert "<aborted/>" in h.client("<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
    out = h.client(
        f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{PLAIN_OK}</auth>"
    )
    assert "<success" in out


def test_stanza_after_auth_before_bind_is_not_authorized(mode: str) -> None:
    h = tls_ready(mode)
    h.client(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{PLAIN_OK}</auth>")
    h.client(HEADER)
    h.client("<message to='bob@localhost'><body>hi</body></message>")
    assert condition_of(h) is StreamErrorCondition.NOT_AUTHORIZED


def test_pre_auth_iq_is_handed_to_the_driver_when_its_namespace_is_allowed(mode: str) -> None:
    h = Harness(
        settings(require_tls=False, pre_auth_namespaces=frozenset({"jabber:iq:register"})), mode
    )
    h.client(HEADER)
    h.client("<iq type='get' id='r1'><query xmlns='jabber:iq:register'/></iq>")
    assert isinstance(h.actions[-1], neg.PreAuthStanza)
    assert h.closed is None


def test_second_starttls_after_tls_fails_and_closes(mode: str) -> None:
    h = tls_ready(mode)
    out = h.client("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    assert "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>" in out
    assert h.closed is not None


def test_client_not_waiting_for_tls_is_policy_violation(mode: str) -> None:
    h = Harness(settings(), mode)
    h.client(HEADER)
    h.client("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><message/>")
    assert condition_of(h) is StreamErrorCondition.POLICY_VIOLATION


def test_channel_binding_types_are_advertised_with_plus_mechanisms(mode: str) -> None:
    """XEP-0440 §2: the types this connection can bind, listed when -PLUS is offered."""
    from chatgate.sasl.base import ConnectionFacts

    facts = ConnectionFacts(
        domain="localhost",
        tls_active=True,
        tls_version="TLSv1.3",
        channel_bindings={"tls-server-end-point": b"e" * 32, "tls-exporter": b"x" * 32},
    )
    h = Harness(
        settings(starttls=False, mechanisms=("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256")), mode, facts
    )
    out = h.client(HEADER)
    assert "<mechanism>SCRAM-SHA-256-PLUS</mechanism>" in out
    feature = re.search(
        r"<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>(.*?)</sasl-channel-binding>", out
    )
    assert feature, out
    assert re.findall(r'type="([^"]+)"', feature.group(1)) == [
        "tls-exporter",
        "tls-server-end-point",
    ]


def test_no_channel_binding_feature_without_plus_mechanisms(mode: str) -> None:
    from chatgate.sasl.base import ConnectionFacts

    facts = ConnectionFacts(
        domain="localhost", tls_active=True, channel_bindings={"tls-exporter": b"x" * 32}
    )
    h = Harness(settings(starttls=False, mechanisms=("SCRAM-SHA-256",)), mode, facts)
    assert "sasl-channel-binding" not in h.client(HEADER)
