"""The negotiation core picks the virtual host from the stream header's `to` (RFC 6120 §4.7.2)."""

from __future__ import annotations

import dataclasses

import pytest

from chatgate.vocabulary.errors import StreamErrorCondition

from .transcript import Harness, settings


@pytest.fixture(params=["whole", "bytewise", "random"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


def header(to: str) -> str:
    return (
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        f"xmlns:stream='http://etherx.jabber.org/streams' to='{to}' version='1.0'>"
    )


def hosts(**changes: object) -> Harness:
    base = settings(starttls=True, require_tls=True)
    served = frozenset({"localhost", "guest.localhost", "example.net"})
    return Harness(dataclasses.replace(base, domains=served, **changes))  # type: ignore[arg-type]


def test_the_header_picks_the_host_and_our_header_names_it(mode: str) -> None:
    h = hosts()
    h.mode = mode
    out = h.client(header("Example.NET."))
    assert 'from="example.net"' in out
    assert h.core.facts.domain == "example.net"


def test_the_host_survives_starttls_and_a_restart_must_name_it_again(mode: str) -> None:
    h = hosts()
    h.mode = mode
    h.client(header("guest.localhost"))
    h.client("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    h.tls_established()  # the transport's facts name the main domain
    assert h.core.facts.domain == "guest.localhost"
    assert h.core.facts.tls_active
    out = h.client(header("localhost"))
    assert h.closed is not None
    assert h.closed.condition is StreamErrorCondition.HOST_UNKNOWN
    assert "guest.localhost" in h.closed.text
    assert 'from="guest.localhost"' in out


def test_a_domain_not_served_is_host_unknown_with_the_main_domain_answering(mode: str) -> None:
    h = hosts()
    h.mode = mode
    out = h.client(header("elsewhere.example"))
    assert 'from="localhost"' in out
    assert h.closed is not None and h.closed.condition is StreamErrorCondition.HOST_UNKNOWN


def test_pre_auth_features_are_hidden_on_the_hosts_that_have_none(mode: str) -> None:
    register = "<register xmlns='http://jabber.org/features/iq-register'/>"
    h = hosts(
        require_tls=False,
        starttls_available=False,
        pre_auth_features=(register,),
        host_pre_auth_features={"guest.localhost": ()},
    )
    h.mode = mode
    assert register not in h.client(header("guest.localhost"))
    other = hosts(
        require_tls=False,
        starttls_available=False,
        pre_auth_features=(register,),
        host_pre_auth_features={"guest.localhost": ()},
    )
    other.mode = mode
    assert register in other.client(header("localhost"))
