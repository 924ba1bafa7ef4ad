"""XEP-0059 `<set/>` reading shared by the archive and the room list."""

from __future__ import annotations

import pytest

from chatgate.modules.rsm import SetRequest, read_set
from chatgate.vocabulary.errors import StanzaError
from chatgate.xml.framed import parse_fragment

RSM = "http://jabber.org/protocol/rsm"


def rsm(inner: str):  # type: ignore[no-untyped-def]
    data = f"<set xmlns='{RSM}'>{inner}</set>".encode()
    return parse_fragment(data, RSM, max_stanza_bytes=len(data) + 1)


@pytest.mark.parametrize(
    ("inner", "expected"),
    [
        ("", SetRequest(10)),
        ("<max>3</max><after>a</after>", SetRequest(3, after="a")),
        ("<max>500</max><before/>", SetRequest(50, before="")),  # lowered to the cap
        ("<before>b</before>", SetRequest(10, before="b")),
    ],
)
def test_what_a_set_asks_for(inner: str, expected: SetRequest) -> None:
    assert read_set(rsm(inner), 10, 50) == expected


@pytest.mark.parametrize(
    ("inner", "condition"),
    [
        ("<max>x</max>", "bad-request"),
        ("<max>-1</max>", "bad-request"),
        ("<index>2</index>", "feature-not-implemented"),
        ("<after/>", "bad-request"),
        ("<after>a</after><before>b</before>", "bad-request"),
    ],
)
def test_a_malformed_set_is_refused(inner: str, condition: str) -> None:
    with pytest.raises(StanzaError) as caught:
        read_set(rsm(inner), 10, 50)
    assert caught.value.condition.value == condition


def test_cursors_go_through_the_pagers_check() -> None:
    def refuse(cursor: str) -> str:
        raise AssertionError("an empty <before/> is no cursor to check")

    assert read_set(rsm("<before/>"), 10, 50, refuse) == SetRequest(10, before="")
    assert read_set(rsm("<after>x</after>"), 10, 50, str.upper) == SetRequest(10, after="X")
