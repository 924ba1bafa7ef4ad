"""The extauth wire format (ejabberd's external authentication protocol), byte for byte."""

from __future__ import annotations

import pytest

from chatgate.auth.extauth import (
    MAX_FRAME,
    ExtauthProtocolError,
    ExtauthProvider,
    RequestTooLong,
    decode_reply,
    encode_request,
    reply_length,
)
from chatgate.auth.options import ExtauthProviderOptions
from chatgate.auth.provider import ProviderUnavailable


def test_auth_request_frame() -> None:
    assert (
        encode_request("auth", "alice", "localhost", "secret")
        == b"\x00\x1bauth:alice:localhost:secret"
    )


def test_isuser_request_frame() -> None:
    assert encode_request("isuser", "alice", "localhost") == b"\x00\x16isuser:alice:localhost"


def test_setpass_request_frame() -> None:
    assert (
        encode_request("setpass", "bob", "example.org", "new")
        == b"\x00\x1bsetpass:bob:example.org:new"
    )


def test_password_may_contain_colons() -> None:
    frame = encode_request("auth", "alice", "localhost", "pa:ss:")
    assert frame[2:] == b"auth:alice:localhost:pa:ss:"
    # what a program does: split on the first three colons only
    assert frame[2:].decode().split(":", 3) == ["auth", "alice", "localhost", "pa:ss:"]


def test_length_counts_utf8_bytes_big_endian() -> None:
    password = "é" * 200  # 400 bytes
    frame = encode_request("auth", "ünï", "localhost", password)
    payload = "auth:ünï:localhost:".encode() + password.encode()
    assert len(payload) == 421
    assert frame == b"\x01\xa5" + payload


@pytest.mark.parametrize(("user", "server"), [("a:b", "localhost"), ("alice", "local:host")])
def test_colon_in_user_or_server_is_refused(user: str, server: str) -> None:
    with pytest.raises(ValueError, match="ambiguous"):
        encode_request("auth", user, server, "pw")


def test_largest_frame_fits_and_one_more_byte_does_not() -> None:
    head = len("auth:a:b:")
    assert len(encode_request("auth", "a", "b", "x" * (MAX_FRAME - head))) == MAX_FRAME + 2
    with pytest.raises(RequestTooLong):
        encode_request("auth", "a", "b", "x" * (MAX_FRAME - head + 1))


@pytest.mark.parametrize(("body", "verdict"), [(b"\x00\x01", True), (b"\x00\x00", False)])
def test_reply_verdicts(body: bytes, verdict: bool) -> None:
    assert reply_length(b"\x00\x02") == 2
    assert decode_reply(body) is verdict


@pytest.mark.parametrize("header", [b"\x00\x00", b"\x00\x01", b"\x00\x03", b"\x02\x00"])
def test_reply_of_other_length_is_a_protocol_error(header: bytes) -> None:
    with pytest.raises(ExtauthProtocolError):
        reply_length(header)


@pytest.mark.parametrize("body", [b"\x00\x02", b"\x01\x00", b"\xff\xff", b"\x00"])
def test_reply_of_other_value_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(ExtauthProtocolError):
        decode_reply(body)


def test_protocol_error_means_unavailable() -> None:
    assert issubclass(ExtauthProtocolError, ProviderUnavailable)


async def test_too_long_password_is_nobodys_password() -> None:
    provider = ExtauthProvider(ExtauthProviderOptions(command=["unused"]))
    assert await provider.verify_password("alice", "localhost", "x" * 70_000) is False


async def test_empty_password_is_refused_without_asking() -> None:
    provider = ExtauthProvider(ExtauthProviderOptions(command=["unused"]))
    assert await provider.verify_password("alice", "localhost", "") is False


async def test_question_before_start_is_a_programming_error() -> None:
    provider = ExtauthProvider(ExtauthProviderOptions(command=["unused"]))
    with pytest.raises(RuntimeError, match="start"):
        await provider.user_exists("alice", "localhost")
