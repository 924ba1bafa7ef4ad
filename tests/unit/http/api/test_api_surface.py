"""The parts of the API that are not one resource: the OpenAPI document, the
stream authority switched off, message input rules, the redacted configuration."""

from __future__ import annotations

import json

from chatgate.administration.configuration import REDACTED, redacted_config
from chatgate.config import Config
from chatgate.http.api.routes import api_operations

from .conftest import Api


async def test_the_document_is_public_and_lists_every_operation(api: Api) -> None:
    async with api.client.get("/api/v1/openapi.json") as r:
        assert r.status == 200
        doc = await r.json()
    listed = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert listed == {(op.method, op.path) for op in api_operations()}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            refs = json.dumps(op)
            for ref in set(refs.split('"$ref": "')[1:]):
                name = ref.split('"')[0].rsplit("/", 1)[1]
                assert name in doc["components"]["schemas"], (method, path, name)


def test_every_change_names_its_audit_action() -> None:
    for op in api_operations():
        assert (op.action is None) == (op.method == "GET"), (op.method, op.path)


async def test_streams_off_is_404_not_configured(api: Api) -> None:
    for method, path in (("GET", "/streams/rules"), ("GET", "/streams/live")):
        status, body, _ = await api.call(method, path)
        assert status == 404 and body["error"]["code"] == "not_configured"
        assert "[streams]" in body["error"]["message"]


async def test_message_bodies_xml_cannot_carry_are_refused(api: Api) -> None:
    await api.server.add_user("alice", "alice-password")
    status, body, _ = await api.call(
        "POST", "/messages", json={"to": "alice@localhost", "body": "bell \x07"}
    )
    assert status == 422 and body["error"]["fields"][0]["field"] == "body"
    status, body, _ = await api.call(
        "POST", "/messages", json={"to": "alice@localhost", "body": "x" * 65_537}
    )
    assert status == 422 and body["error"]["fields"][0]["field"] == "body"


def test_the_configuration_is_redacted() -> None:
    config = Config.model_validate(
        {
            "storage": {"url": "postgresql+asyncpg://chat:hunter2@db.example/chat"},
            "modules": {"register": {"invite_tokens": [{"token": "invite-secret-1"}]}},
            "admin": {"remotehttp": {"shared_secret": "relay-secret"}},
        }
    )
    shown = json.dumps(redacted_config(config))
    for secret in ("hunter2", "invite-secret-1", "relay-secret"):
        assert secret not in shown
    redacted = redacted_config(config)
    assert redacted["storage"]["url"] == f"postgresql+asyncpg://chat:{REDACTED}@db.example/chat"
    assert redacted["server"]["domain"] == config.server.domain


def test_a_storage_password_sqlalchemy_reads_is_redacted_too() -> None:
    """An unescaped `/` in the password (SQLAlchemy reads it, a regex on the
    userinfo did not) and a `?password=` in the query (libpq and asyncpg read it)."""
    for url, shown in (
        (
            "postgresql+asyncpg://chat:hun/ter2@db.example/chat",
            f"postgresql+asyncpg://chat:{REDACTED}@db.example/chat",
        ),
        (
            "postgresql+asyncpg://chat@db.example/chat?password=hunter2&ssl=require",
            f"postgresql+asyncpg://chat@db.example/chat?password={REDACTED}&ssl=require",
        ),
    ):
        config = Config.model_validate({"storage": {"url": url}})
        assert redacted_config(config)["storage"]["url"] == shown
    plain = "https://auth.example/check?user=1"
    config = Config.model_validate({"storage": {"url": plain}})
    assert redacted_config(config)["storage"]["url"] == plain  # nothing to hide: unchanged
