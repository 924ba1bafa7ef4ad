"""XEP-0078 legacy authentication driven by transcripts through the real connection.

The vectors for digest and zero-knowledge come from XEP-0078 §3 (stream id
3EE948B0, password Calli0pe) and Programming Jabber ch. 7 (the ``0k`` script:
password secret, token ABCDE, sequence 400).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chatgate.auth.credentials import derive_all
from chatgate.modules.legacy_auth import (
    LegacyAuthOptions,
    derive_legacy_secrets,
    digest_value,
    zero_knowledge_chain,
    zero_knowledge_client_hash,
    zero_knowledge_step,
)
from chatgate.modules.preauth import ConnectionTable
from chatgate.storage.repositories.legacy import LegacySecrets, ZeroKnowledgeChain

from .wire import HEADER, PasswordService, Server, plain

LEGACY = {"enabled": True}
ALL = {"enabled": True, "digest": True, "zero_knowledge": True}
NOT_AUTHORIZED = (
    '<error type="auth" code="401"><not-authorized xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>'
)


@contextlib.asynccontextmanager
async def server(tmp: Path, legacy: dict[str, Any], **config: Any) -> AsyncIterator[Server]:
    srv = await Server.start(tmp, {"legacy_auth": legacy}, **config)
    try:
        yield srv
    finally:
        await srv.stop()


async def provision(srv: Server, username: str, password: str) -> None:
    """An account with the legacy secrets the configuration asks for."""
    await srv.add_user(username, password)
    options = srv.module("legacy_auth").options
    secrets = derive_legacy_secrets(password, username, "localhost", options)
    await srv.db.legacy.set_secrets((username, "localhost"), secrets)


def auth_set(
    username: str, resource: str | None = "globe", iq_id: str = "auth2", **cred: str
) -> str:
    parts = [f"<username>{username}</username>"] if username else []
    parts += [f"<{k}>{v}</{k}>" for k, v in cred.items()]
    if resource is not None:
        parts.append(f"<resource>{resource}</resource>")
    return (
        f"<iq type='set' id='{iq_id}'><query xmlns='jabber:iq:auth'>{''.join(parts)}</query></iq>"
    )


def auth_get(username: str | None = None) -> str:
    inner = f"<username>{username}</username>" if username else ""
    return f"<iq type='get' id='auth1'><query xmlns='jabber:iq:auth'>{inner}</query></iq>"


# ---------------------------------------------------------------- published vectors


def test_digest_matches_the_xep_0078_example() -> None:
    assert digest_value("3EE948B0", "Calli0pe") == "48fc78be9ec8f86d8ce1c39c320c97c21d62334d"


def test_zero_knowledge_matches_the_books_0k_script() -> None:
    # Programming Jabber, example 7-4: ./0k -p secret -t ABCDE -s 400
    assert zero_knowledge_client_hash("secret", "ABCDE", 400) == (
        "01945b9b2c3207c4cce5dc99e50605779f570077"
    )


def test_zero_knowledge_step_accepts_n_minus_one_once_and_decrements() -> None:
    chain = zero_knowledge_chain("secret", "ABCDE", 401)
    client = zero_knowledge_client_hash("secret", "ABCDE", 400)
    nxt = zero_knowledge_step(chain, client.upper())
    assert nxt == ZeroKnowledgeChain("ABCDE", 400, client)
    assert zero_knowledge_step(nxt, client) is None  # a replay does not hash forward


def test_zero_knowledge_refuses_an_exhausted_chain() -> None:
    chain = zero_knowledge_chain("secret", "ABCDE", 0)
    assert zero_knowledge_step(chain, chain.hash) is None


def test_secrets_are_stored_only_when_configured() -> None:
    assert derive_legacy_secrets("pw", "u", "localhost", LegacyAuthOptions()) == LegacySecrets()
    opts = LegacyAuthOptions(digest=True, zero_knowledge=True, digest_md5=True)
    secrets = derive_legacy_secrets("pw", "u", "localhost", opts)
    assert secrets.digest_password == "pw"
    assert secrets.digest_md5 is not None
    assert secrets.digest_md5.ha1 == hashlib.md5(b"u:localhost:pw").digest()
    assert secrets.zero_knowledge is not None and secrets.zero_knowledge.sequence == 500


# ---------------------------------------------------------------- stream features


async def test_iq_auth_feature_only_when_enabled(tmp_path: Path, mode: str) -> None:
    async with server(tmp_path, LEGACY) as srv:
        out = await srv.connect(mode).open()
        assert "<auth xmlns='http://jabber.org/features/iq-auth'/>" in out
    async with server(tmp_path / "off", {}) as srv:
        out = await srv.connect(mode).open()
        assert "iq-auth" not in out


async def test_disabled_answers_service_unavailable(tmp_path: Path, mode: str) -> None:
    async with server(tmp_path, {}) as srv:
        await provision(srv, "bill", "Calli0pe")
        wire = srv.connect(mode)
        await wire.open()
        for request in (auth_get("bill"), auth_set("bill", password="Calli0pe")):
            out = await wire.send(request)
            assert 'code="503"><service-unavailable ' in out
        assert not wire.closed


# ---------------------------------------------------------------- inquiry


async def test_fields_without_username_list_the_enabled_methods(tmp_path: Path, mode: str) -> None:
    async with server(tmp_path, {**ALL, "zero_knowledge": False}) as srv:
        wire = srv.connect(mode)
        await wire.open()
        assert await wire.send(auth_get()) == (
            '<iq type="result" id="auth1"><query xmlns="jabber:iq:auth">'
            "<username/><password/><digest/><resource/></query></iq>"
        )


async def test_fields_for_an_account_include_sequence_and_token(tmp_path: Path, mode: str) -> None:
    async with server(tmp_path, ALL) as srv:
        await srv.add_user("dj", "secret")
        await srv.db.legacy.set_secrets(
            ("dj", "localhost"),
            LegacySecrets("secret", None, zero_knowledge_chain("secret", "3B2DEEC0", 497)),
        )
        wire = srv.connect(mode)
        await wire.open()
        # Programming Jabber example 7-3, with this stream's N-1.
        assert await wire.send(auth_get("dj")) == (
            '<iq type="result" id="auth1"><query xmlns="jabber:iq:auth">'
            "<username>dj</username><password/><digest/><sequence>496</sequence>"
            "<token>3B2DEEC0</token><resource/></query></iq>"
        )


async def test_unknown_user_gets_the_same_shape_of_answer(tmp_path: Path, mode: str) -> None:
    async with server(tmp_path, ALL) as srv:
        wire = srv.connect(mode)
        await wire.open()
        out = await wire.send(auth_get("nobody"))
        assert out.startswith('<iq type="result" id="auth1">')
        for element in ("<password/>", "<digest/>", "<sequence>", "<token>", "<resource/>"):
            assert element in out


async def test_plaintext_is_hidden_and_refused_without_tls(tmp_path: Path, mode: str) -> None:
    async with server(tmp_path, LEGACY) as srv:
        await provision(srv, "bill", "Calli0pe")
        wire = srv.connect(mode, tls=False, require_tls=False)
        await wire.open()
        assert "<password/>" not in await wire.send(auth_get("bill"))
        out = await wire.send(auth_set("bill", password="Calli0pe"))
        assert NOT_AUTHORIZED in out and "plaintext passwords need TLS" in out


async def test_listener_requiring_tls_refuses_legacy_auth_before_tls(
    tmp_path: Path, mode: str
) -> None:
    async with server(tmp_path, {**LEGACY, "allow_plaintext_without_tls": True}) as srv:
        await provision(srv, "bill", "Calli0pe")
        wire = srv.connect(mode, tls=False, require_tls=True)
        await wire.open()
        out = await wire.send(auth_set("bill", password="Calli0pe"))
        assert NOT_AUTHORIZED in out and "negotiate TLS first" in out


# ---------------------------------------------------------------- logins


async def test_plaintext_login_opens_the_session(tmp_path: Path, mode: str) -> None:
    async with server(tmp_path, LEGACY) as srv:
        await provision(srv, "bill", "Calli0pe")
        wire = srv.connect(mode)
        await wire.open()
        assert await wire.send(auth_set("bill", password="Calli0pe")) == (
            '<iq type="result" id="auth2"/>'
        )
        assert set(srv.ctx.router.directory.local["bill@localhost"]) == {"globe"}
        out = await wire.send("<iq type='get' id='v'><query xmlns='jabber:iq:version'/></iq>")
        assert 'to="bill@localhost/globe"' in out and "<name>chatgate</name>" in out


async def test_plaintext_allowed_without_tls_when_configured(tmp_path: Path, mode: str) -> None:
    async with server(tmp_path, {**LEGACY, "allow_plaintext_without_tls": True}) as srv:
        await provision(srv, "bill", "Calli0pe")
        wire = srv.connect(mode, tls=False, require_tls=False)
        await wire.open()
        assert "<password/>" in await wire.send(auth_get("bill"))
        assert await wire.send(auth_set("bill", password="Calli0pe")) == (
            '<iq type="result" id="auth2"/>'
        )


async def test_wrong_password_is_not_authorized_without_echo(tmp_path: Path, mode: str) -> None:
    async with server(tmp_path, LEGACY) as srv:
        await provision(srv, "bill", "Calli0pe")
        wire = srv.connect(mode)
        await wire.open()
        out = await wire.send(auth_set("bill", password="m1cro$oft"))
        assert out == f'<iq type="error" id="auth2">{NOT_AUTHORIZED}</error></iq>'
        assert not srv.ctx.router.directory.bound_here("bill@localhost")


async def test_digest_login(tmp_path: Path, mode: str) -> None:
    async with server(tmp_path, {**LEGACY, "digest": True}) as srv:
        await provision(srv, "bill", "Calli0pe")
        wire = srv.connect(mode, tls=False, require_tls=False)
        await wire.open()
        wrong = await wire.send(auth_set("bill", digest=digest_value(wire.sid, "nope")))
        assert NOT_AUTHORIZED in wrong
        out = await wire.send(auth_set("bill", digest=digest_value(wire.sid, "Calli0pe").upper()))
        assert out == '<iq type="result" id="auth2"/>'


async def test_digest_needs_the_stored_secret(tmp_path: Path, mode: str) -> None:
    async with server(tmp_path, {**LEGACY, "digest": True}) as srv:
        await srv.add_user("bill", "Calli0pe")  # e.g. made by the CLI: no digest secret
        wire = srv.connect(mode)
        await wire.open()
        assert "<digest/>" not in await wire.send(auth_get("bill"))
        out = await wire.send(auth_set("bill", digest=digest_value(wire.sid, "Calli0pe")))
        assert NOT_AUTHORIZED in out


async def test_plaintext_login_provisions_missing_legacy_secrets(tmp_path: Path, mode: str) -> None:
    async with server(tmp_path, {**LEGACY, "digest": True}) as srv:
        await srv.add_user("bill", "Calli0pe")
        wire = srv.connect(mode)
        await wire.open()
        await wire.send(auth_set("bill", password="Calli0pe"))
        stored = await srv.db.legacy.secrets(("bill", "localhost"))
        assert stored is not None and stored.digest_password == "Calli0pe"


async def test_zero_knowledge_login_walks_the_sequence_down(tmp_path: Path, mode: str) -> None:
    async with server(tmp_path, {**LEGACY, "zero_knowledge": True}) as srv:
        await provision(srv, "dj", "secret")
        sequences = []
        for attempt in range(3):
            wire = srv.connect(mode, tls=False, require_tls=False)
            await wire.open()
            out = await wire.send(auth_get("dj"))
            sequence = int(out.split("<sequence>")[1].split("<")[0])
            token = out.split("<token>")[1].split("<")[0]
            sequences.append(sequence)
            client = zero_knowledge_client_hash("secret", token, sequence)
            res = await wire.send(auth_set("dj", resource=f"r{attempt}", hash=client))
            assert res == '<iq type="result" id="auth2"/>'
        assert sequences == [499, 498, 497]
        # The hash just used is worth nothing now.
        wire = srv.connect(mode, tls=False, require_tls=False)
        await wire.open()
        assert NOT_AUTHORIZED in await wire.send(auth_set("dj", hash=client))


async def test_zero_knowledge_is_refused_at_sequence_zero(tmp_path: Path, mode: str) -> None:
    async with server(tmp_path, {**LEGACY, "zero_knowledge": True}) as srv:
        await srv.add_user("dj", "secret")
        chain = zero_knowledge_chain("secret", "ABCDE", 1)
        await srv.db.legacy.set_secrets(("dj", "localhost"), LegacySecrets(zero_knowledge=chain))
        wire = srv.connect(mode)
        await wire.open()
        assert "<sequence>0</sequence>" in await wire.send(auth_get("dj"))
        h0 = zero_knowledge_client_hash("secret", "ABCDE", 0)
        assert await wire.send(auth_set("dj", hash=h0)) == '<iq type="result" id="auth2"/>'
        wire = srv.connect(mode)
        await wire.open()
        assert "<sequence>" not in await wire.send(auth_get("dj"))
        assert NOT_AUTHORIZED in await wire.send(auth_set("dj", hash=h0))


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "request_xml",
    [
        auth_set("bill", resource=None, password="Calli0pe"),  # the book's example: no resource
        auth_set("", password="Calli0pe"),
        auth_set("bill"),
        auth_set("bill", password="Calli0pe", digest="00"),
    ],
    ids=["no-resource", "no-username", "no-credential", "two-credentials"],
)
async def test_incomplete_request_is_not_acceptable(
    tmp_path: Path, mode: str, request_xml: str
) -> None:
    async with server(tmp_path, LEGACY) as srv:
        await provision(srv, "bill", "Calli0pe")
        wire = srv.connect(mode)
        await wire.open()
        out = await wire.send(request_xml)
        assert out.startswith('<iq type="error" id="auth2"><error type="modify" code="406">')
        assert "<not-acceptable " in out and "Calli0pe" not in out


async def test_resource_conflict_is_409_when_the_policy_rejects(tmp_path: Path, mode: str) -> None:
    async with server(tmp_path, LEGACY, session={"resource_conflict": "reject"}) as srv:
        await provision(srv, "bill", "Calli0pe")
        first = srv.connect(mode)
        await first.open()
        assert '"result"' in await first.send(auth_set("bill", password="Calli0pe"))
        second = srv.connect(mode)
        await second.open()
        out = await second.send(auth_set("bill", password="Calli0pe"))
        assert out == (
            '<iq type="error" id="auth2"><error type="cancel" code="409">'
            '<conflict xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>'
        )
        # The stream is still unauthenticated and may try another resource.
        assert '"result"' in await second.send(auth_set("bill", "office", password="Calli0pe"))


async def test_after_a_failed_sasl_attempt_iq_auth_is_a_policy_violation(
    tmp_path: Path, mode: str
) -> None:
    async with server(tmp_path, LEGACY) as srv:
        await provision(srv, "bill", "Calli0pe")
        wire = srv.connect(mode)
        await wire.open()
        assert "<not-authorized/>" in await wire.send(plain("bill", "wrong"))
        out = await wire.send(auth_set("bill", password="Calli0pe"))
        assert "<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out
        assert wire.closed


async def test_too_many_failures_close_the_stream(tmp_path: Path, mode: str) -> None:
    async with server(tmp_path, LEGACY) as srv:
        await provision(srv, "bill", "Calli0pe")
        wire = srv.connect(mode)
        await wire.open()
        for attempt in range(3):
            out = await wire.send(auth_set("bill", password=f"wrong{attempt}"))
            assert NOT_AUTHORIZED in out
        assert "<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out
        assert wire.closed


async def test_register_then_legacy_login_in_one_stream(tmp_path: Path, mode: str) -> None:
    """Programming Jabber ch. 7: registration, then authentication, on the same stream."""
    srv = await Server.start(tmp_path, {"register": {"enabled": True}, "legacy_auth": LEGACY})
    try:
        wire = srv.connect(mode)
        await wire.send(HEADER)
        out = await wire.send(
            "<iq type='set' id='reg2'><query xmlns='jabber:iq:register'>"
            "<username>leslie</username><password>secret-leslie</password></query></iq>"
            + auth_set("leslie", password="secret-leslie")
        )
        assert out == '<iq type="result" id="reg2"/><iq type="result" id="auth2"/>'
    finally:
        await srv.stop()


async def test_password_set_elsewhere_retires_the_old_digest_secret(
    tmp_path: Path, mode: str
) -> None:
    async with server(tmp_path, {**LEGACY, "digest": True}) as srv:
        await provision(srv, "bill", "Calli0pe")
        await srv.db.accounts.set_credentials("bill", "localhost", derive_all("N3w-pass"))
        srv.ctx.provider.invalidate("bill", "localhost")  # what the CLI's stamp does
        wire = srv.connect(mode)
        await wire.open()
        out = await wire.send(auth_set("bill", digest=digest_value(wire.sid, "Calli0pe")))
        assert NOT_AUTHORIZED in out
        # The next plaintext login stores the secret of the current password.
        await wire.send(auth_set("bill", "globe", "a3", password="N3w-pass"))
        again = srv.connect(mode)
        await again.open()
        out = await again.send(auth_set("bill", digest=digest_value(again.sid, "N3w-pass")))
        assert out == '<iq type="result" id="auth2"/>'


def test_connection_table_forgets_closed_and_authenticated_connections() -> None:
    @dataclass(eq=False)
    class Conn:
        closed: bool = False
        session: object | None = None

    table: ConnectionTable[list[int]] = ConnectionTable(list)
    conns = [Conn() for _ in range(64)]
    for conn in conns:
        table(conn).append(1)  # type: ignore[arg-type]
    for conn in conns[:40]:
        conn.closed = True
    for conn in conns[40:50]:
        conn.session = object()
    assert table(conns[60]) == [1]  # kept: open and unauthenticated
    table(Conn())  # type: ignore[arg-type]  # the 65th entry sweeps
    assert len(table) == 15


async def test_a_provider_backed_host_offers_only_the_password_method(
    tmp_path: Path, mode: str
) -> None:
    """Digest and zero-knowledge need secrets from chatgate's own store; where an
    external provider keeps the accounts, only <password/> can be checked."""
    srv = await Server.start(tmp_path, {"legacy_auth": ALL}, provider=PasswordService())
    try:
        wire = srv.connect(mode)
        await wire.open()
        fields = await wire.send(auth_get("carol"))
        assert "<password/>" in fields and "<resource/>" in fields
        assert "<digest/>" not in fields and "<sequence>" not in fields
        out = await wire.send(auth_set("carol", digest=digest_value(wire.sid, "carols-password")))
        assert NOT_AUTHORIZED in out
        again = srv.connect(mode)
        await again.open()
        out = await again.send(auth_set("carol", password="carols-password"))
        assert out == '<iq type="result" id="auth2"/>'
    finally:
        await srv.stop()
