"""Slot requests checked (XEP-0363 §4) and PUT URLs signed: the pure part."""

from __future__ import annotations

import pytest

from chatgate.modules.upload.slots import (
    UPLOAD,
    SlotError,
    SlotSigner,
    get_url,
    put_url,
    read_request,
    type_allowed,
)
from chatgate.vocabulary.errors import StanzaErrorCondition
from chatgate.xml.element import Element

MAX = 1000


def request(**attrs: str) -> Element:
    return Element("request", UPLOAD, attrs)


def refused(**attrs: str) -> SlotError:
    with pytest.raises(SlotError) as caught:
        read_request(request(**attrs), MAX, ())
    return caught.value


def test_a_good_request_is_read() -> None:
    wanted = read_request(
        request(filename="été 2026.jpg", size="999", **{"content-type": "image/jpeg"}), MAX, ()
    )
    assert (wanted.filename, wanted.size, wanted.content_type) == (
        "été 2026.jpg",
        999,
        "image/jpeg",
    )
    untyped = read_request(request(filename="a", size="1"), MAX, ())
    assert untyped.content_type == "application/octet-stream"


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "a/b", "..", ".", "a\\b", "nul\x01", 'q"uote', "x" * 256, ""]
)
def test_path_traversal_and_odd_names_are_bad_requests(name: str) -> None:
    assert refused(filename=name, size="10").condition is StanzaErrorCondition.BAD_REQUEST


@pytest.mark.parametrize("size", ["-1", "0", "1e3", "", "12abc", "9" * 40, " 5"])
def test_sizes_that_are_not_positive_integers_are_bad_requests(size: str) -> None:
    assert refused(filename="f", size=size).condition is StanzaErrorCondition.BAD_REQUEST


def test_too_large_names_the_maximum() -> None:
    error = refused(filename="f", size=str(MAX + 1))
    assert error.condition is StanzaErrorCondition.NOT_ACCEPTABLE
    assert error.error_type == "modify"
    assert error.app is not None and error.app.name == "file-too-large"
    limit = error.app.find("max-file-size")
    assert limit is not None and limit.text == str(MAX)


@pytest.mark.parametrize(
    "kind", ["x" * 300 + "/y", "text", "text/html\r\nX-Evil: 1", "a/b; c", "<x>/y", "a /b"]
)
def test_content_types_that_are_not_media_types_are_bad_requests(kind: str) -> None:
    error = refused(filename="f", size="1", **{"content-type": kind})
    assert error.condition is StanzaErrorCondition.BAD_REQUEST


def test_allowed_types_with_wildcards() -> None:
    assert type_allowed("image/png", ("image/*",))
    assert not type_allowed("text/html", ("image/*", "audio/ogg"))
    with pytest.raises(SlotError) as caught:
        read_request(
            request(filename="f", size="1", **{"content-type": "text/html"}), MAX, ("image/*",)
        )
    assert caught.value.condition is StanzaErrorCondition.NOT_ACCEPTABLE


def test_signature_covers_every_term() -> None:
    signer = SlotSigner(b"k" * 32)
    good = signer.signature("t" * 32, "f.txt", 10, "text/plain", 1_800_000_000)
    assert signer.check(good, "t" * 32, "f.txt", 10, "text/plain", 1_800_000_000)
    # parameters do not change the media type signed
    assert signer.check(good, "t" * 32, "f.txt", 10, "TEXT/plain; charset=utf-8", 1_800_000_000)
    for changed in (
        ("u" * 32, "f.txt", 10, "text/plain", 1_800_000_000),
        ("t" * 32, "g.txt", 10, "text/plain", 1_800_000_000),
        ("t" * 32, "f.txt", 11, "text/plain", 1_800_000_000),
        ("t" * 32, "f.txt", 10, "text/html", 1_800_000_000),
        ("t" * 32, "f.txt", 10, "text/plain", 1_800_000_001),
    ):
        assert not signer.check(good, *changed)
    assert not SlotSigner(b"x" * 32).check(good, "t" * 32, "f.txt", 10, "text/plain", 1_800_000_000)
    assert not signer.check("", "t" * 32, "f.txt", 10, "text/plain", 1_800_000_000)


def test_urls_quote_the_filename() -> None:
    url = get_url("https://h:5281/", "t" * 32, "a b?#é.txt")
    assert url == f"https://h:5281/upload/{'t' * 32}/a%20b%3F%23%C3%A9.txt"
    assert put_url("https://h", "t" * 32, "x", 5, "sig").endswith("/x?e=5&s=sig")
