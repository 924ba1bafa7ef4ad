"""Resumption tokens that name their node (`xmpp/sm_tokens.py`): unguessable, bound
to their account, unforgeable without the installation secret."""

from __future__ import annotations

import base64

import pytest

from chatgate.xmpp.sm_tokens import MAX_TOKEN, TokenSigner

KEY = b"k" * 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_token_names_the_node_that_issued_it_to_its_account_only() -> None:
    token = TokenSigner(KEY, "n1").issue("alice@example.net")
    other_node = TokenSigner(KEY, "n2")  # any node of the installation reads it
    assert other_node.node_of(token, "alice@example.net") == "n1"
    assert other_node.node_of(token, "mallory@example.net") is None
    assert TokenSigner(b"x" * 32, "n2").node_of(token, "alice@example.net") is None


def test_tokens_are_unique_and_xml_attribute_safe() -> None:
    signer = TokenSigner(KEY, "node-1.example")
    tokens = {signer.issue("a@x") for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(
        set(t) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
        for t in tokens
    )


def test_a_token_made_to_name_another_node_is_refused() -> None:
    signer = TokenSigner(KEY, "n1")
    node, nonce, mac = signer.issue("alice@example.net").split(".")
    assert signer.node_of(f"{_b64(b'n2')}.{nonce}.{mac}", "alice@example.net") is None
    assert signer.node_of(f"{node}.{nonce}.{_b64(bytes(16))}", "alice@example.net") is None
    assert signer.node_of(f"{node}.{_b64(b'short')}.{mac}", "alice@example.net") is None


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b", "a.b.c.d", "!!.??.**", "x" * (MAX_TOKEN + 1), "...", "\u00e9.\u00e9.\u00e9"],
)
def test_malformed_tokens_name_no_node(token: str) -> None:
    assert TokenSigner(KEY, "n1").node_of(token, "alice@example.net") is None


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(ValueError):
        TokenSigner(b"", "n1")
