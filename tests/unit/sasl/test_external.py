"""EXTERNAL (RFC 4422 App. A, XEP-0178) driven with transcripts over test certificates.

The certificates are built with `cryptography` in `tests/certgen.py`, which
encodes id-on-xmppAddr by hand, independently of `chatgate.auth.certs`.
"""

from __future__ import annotations

import pytest

from chatgate.auth.certs import certificate_jids
from chatgate.auth.provider import Capability
from chatgate.config import TlsConfig
from chatgate.sasl.base import (
    Challenge,
    ConnectionFacts,
    CredentialAnswer,
    Failure,
    NeedCredentials,
    Success,
)
from chatgate.sasl.external import ExternalFactory, ExternalMechanism
from chatgate.sasl.registry import builtin_mechanisms
from chatgate.sasl.selection import offered_mechanisms
from chatgate.vocabulary.errors import SaslFailureCondition as C
from tests.certgen import make_ca, make_client

CA = make_ca()
ALICE = make_client(xmpp_addrs=("alice@example.com",), issuer=CA)
TWO = make_client(xmpp_addrs=("alice@example.com", "bob@example.com"), issuer=CA)
FOREIGN = make_client(xmpp_addrs=("alice@elsewhere.net",), issuer=CA)
EMAIL_ONLY = make_client(emails=("carol@example.com",), common_name="dave@example.com", issuer=CA)

EXISTS = CredentialAnswer(user_exists=True)
MISSING = CredentialAnswer(user_exists=False)


def _facts(der: bytes | None) -> ConnectionFacts:
    return ConnectionFacts(domain="example.com", tls_active=True, peer_certificate_der=der)


def _mech(der: bytes | None, **kw) -> ExternalMechanism:  # type: ignore[no-untyped-def]
    return ExternalMechanism(_facts(der), b"", False, **kw)


def _fail(step: object, condition: C) -> None:
    assert isinstance(step, Failure), step
    assert step.condition is condition, step


# -- transcripts -------------------------------------------------------------------------------


@pytest.mark.parametrize("initial", [b"", None], ids=["empty-response", "no-initial-response"])
def test_single_xmpp_addr_logs_in_without_authzid(initial: bytes | None) -> None:
    mech = _mech(ALICE.der)
    step = mech.start(initial)
    if initial is None:
        assert step == Challenge(b"")
        step = mech.respond(b"")
    assert step == NeedCredentials(Capability.CERT_IDENTITY, "alice")
    assert mech.resume(EXISTS) == Success("alice")


def test_authzid_naming_the_certificates_jid_is_accepted() -> None:
    mech = _mech(ALICE.der)
    assert mech.start(b"Alice@Example.com") == NeedCredentials(Capability.CERT_IDENTITY, "alice")
    assert mech.resume(EXISTS) == Success("alice", authzid="alice@example.com")


def test_several_jids_without_authzid_is_invalid_authzid() -> None:
    _fail(_mech(TWO.der).start(b""), C.INVALID_AUTHZID)


def test_several_jids_with_authzid_picks_that_one() -> None:
    mech = _mech(TWO.der)
    assert mech.start(b"bob@example.com") == NeedCredentials(Capability.CERT_IDENTITY, "bob")
    assert mech.resume(EXISTS) == Success("bob", authzid="bob@example.com")


@pytest.mark.parametrize(
    "authzid", [b"bob@example.com", b"alice@example.com/phone", b"not a jid@@", b"example.com"]
)
def test_authzid_the_certificate_does_not_name_is_invalid_authzid(authzid: bytes) -> None:
    _fail(_mech(ALICE.der).start(authzid), C.INVALID_AUTHZID)


def test_unknown_account_is_not_authorized() -> None:
    mech = _mech(ALICE.der)
    mech.start(b"")
    _fail(mech.resume(MISSING), C.NOT_AUTHORIZED)


def test_unknown_account_is_admitted_with_auto_provision() -> None:
    mech = _mech(ALICE.der, auto_provision=True)
    mech.start(b"")
    assert mech.resume(MISSING) == Success("alice")


def test_provider_outage_is_temporary_auth_failure() -> None:
    mech = _mech(ALICE.der)
    mech.start(b"")
    _fail(mech.resume(CredentialAnswer(temporary_failure=True)), C.TEMPORARY_AUTH_FAILURE)


def test_no_certificate_is_not_authorized() -> None:
    _fail(_mech(None).start(b""), C.NOT_AUTHORIZED)


def test_certificate_of_another_domain_is_not_authorized() -> None:
    _fail(_mech(FOREIGN.der).start(b""), C.NOT_AUTHORIZED)


def test_bad_utf8_authzid_is_incorrect_encoding() -> None:
    _fail(_mech(ALICE.der).start(b"\xff"), C.INCORRECT_ENCODING)


def test_email_and_cn_fallbacks_only_when_configured() -> None:
    _fail(_mech(EMAIL_ONLY.der).start(b""), C.NOT_AUTHORIZED)
    step = _mech(EMAIL_ONLY.der, identity_sources=("xmpp-addr", "email")).start(b"")
    assert step == NeedCredentials(Capability.CERT_IDENTITY, "carol")
    step = _mech(EMAIL_ONLY.der, identity_sources=("cn",)).start(b"")
    assert step == NeedCredentials(Capability.CERT_IDENTITY, "dave")


def test_exchange_is_over_after_the_result() -> None:
    mech = _mech(ALICE.der)
    mech.start(b"")
    mech.resume(EXISTS)
    _fail(mech.respond(b""), C.MALFORMED_REQUEST)


# -- identities --------------------------------------------------------------------------------


def test_xmpp_addr_comes_before_fallbacks_and_jids_are_prepared() -> None:
    cert = make_client(
        xmpp_addrs=("Alice@EXAMPLE.com/res", "alice@example.com", "x@other.org"),
        emails=("e@example.com",),
        issuer=CA,
    )
    assert certificate_jids(cert.der, "example.com", ("xmpp-addr", "email")) == [
        "alice@example.com"
    ]


def test_unknown_identity_source_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="dns"):
        certificate_jids(ALICE.der, "example.com", ("dns",))


# -- selection and registry --------------------------------------------------------------------


def test_external_offered_only_with_a_verified_certificate() -> None:
    registry = builtin_mechanisms(load_entry_points=False)
    offers = frozenset(Capability)
    configured = ["EXTERNAL", "SCRAM-SHA-256"]
    assert offered_mechanisms(
        configured, registry, offers, _facts(None), allow_plaintext_without_tls=False
    ) == ["SCRAM-SHA-256"]
    assert (
        offered_mechanisms(
            configured, registry, offers, _facts(ALICE.der), allow_plaintext_without_tls=False
        )
        == configured
    )


def test_registry_builds_external_with_the_configured_policy() -> None:
    tls = TlsConfig(identity_sources=["email"], auto_provision=True)
    factory = builtin_mechanisms(load_entry_points=False, tls=tls).get("EXTERNAL")
    assert factory == ExternalFactory(("email",), True)
    mech = factory(_facts(EMAIL_ONLY.der), b"", False, advertised=["EXTERNAL"])
    assert mech.start(b"") == NeedCredentials(Capability.CERT_IDENTITY, "carol")
    assert mech.resume(MISSING) == Success("carol")


def test_a_locked_account_is_account_disabled_even_with_auto_provision() -> None:
    # The driver answers a locked account with user_exists and `held` (so that no
    # auto-provisioning replaces the answer): the certificate proved the identity.
    locked = CredentialAnswer(user_exists=True, held="locked", held_condition=C.ACCOUNT_DISABLED)
    for auto_provision in (False, True):
        mech = _mech(ALICE.der, auto_provision=auto_provision)
        mech.start(b"")
        step = mech.resume(locked)
        _fail(step, C.ACCOUNT_DISABLED)
        assert isinstance(step, Failure) and (step.text, step.guess) == ("locked", False)
