"""Wowza's ``publish.password`` file, read as the seed and Wowza's Manager write it."""

from __future__ import annotations

from chatgate.streams.wowza_passwords import WowzaEntry, parse_publish_password

# The file exactly as seed 000 shows it, plus the user the seed adds.
SEED_FILE = """\
# Publish password file (format [username][space][password])
#username password

testuser 123456
"""


def pairs(text: str) -> list[tuple[int, str, str]]:
    return [(e.line, e.username, e.password) for e in parse_publish_password(text).entries]


def test_reads_the_seed_file() -> None:
    parsed = parse_publish_password(SEED_FILE)
    assert pairs(SEED_FILE) == [(4, "testuser", "123456")]
    assert parsed.invalid == []
    assert parsed.comments == 3


def test_tabs_and_runs_of_blanks_separate_fields() -> None:
    text = "alice\ts3cret\nbob   \t  hunter2  \n\tcarol pw-3.x_y\n"
    assert pairs(text) == [(1, "alice", "s3cret"), (2, "bob", "hunter2"), (3, "carol", "pw-3.x_y")]


def test_crlf_bom_and_indented_comments() -> None:
    text = "\ufeff# header\r\n   # indented comment\r\n\r\nalice s3cret\r\n"
    parsed = parse_publish_password(text)
    assert pairs(text) == [(4, "alice", "s3cret")]
    assert parsed.comments == 3


def test_malformed_lines_are_reported_by_number_without_their_text() -> None:
    text = "alice\nbob pw extra\ncarol pw # trailing comment\ndave ok\n"
    parsed = parse_publish_password(text)
    assert pairs(text) == [(4, "dave", "ok")]
    assert [i.line for i in parsed.invalid] == [1, 2, 3]
    assert "only one field" in parsed.invalid[0].reason
    assert "3 fields" in parsed.invalid[1].reason
    assert "5 fields" in parsed.invalid[2].reason
    for item in parsed.invalid:
        for secret in ("alice", "pw", "extra", "trailing"):
            assert secret not in item.reason


def test_control_characters_are_refused_and_the_password_is_not_quoted() -> None:
    text = "alice s3\x00cret\nb\x07ob pw\nnbsp\u00a0x pw\n"
    parsed = parse_publish_password(text)
    assert parsed.entries == []
    assert [i.line for i in parsed.invalid] == [1, 2, 3]
    assert "password of 'alice'" in parsed.invalid[0].reason
    assert "s3" not in parsed.invalid[0].reason
    assert "username" in parsed.invalid[1].reason


def test_a_repeated_username_keeps_the_first_line() -> None:
    text = "alice one\nbob two\nalice three\n"
    parsed = parse_publish_password(text)
    assert pairs(text) == [(1, "alice", "one"), (2, "bob", "two")]
    assert [(i.line, i.reason) for i in parsed.invalid] == [
        (3, "'alice' is also on line 1; that line is kept")
    ]


def test_other_line_breaks_do_not_renumber_lines() -> None:
    # A form feed is not a line end here (str.splitlines would make it one).
    text = "alice a\x0cb\nbob pw\n"
    parsed = parse_publish_password(text)
    assert pairs(text) == [(2, "bob", "pw")]
    assert [i.line for i in parsed.invalid] == [1]


def test_the_password_is_not_in_the_repr() -> None:
    entry = WowzaEntry(1, "alice", "Secret-Canary-81")
    assert "Secret-Canary-81" not in repr(entry)
    assert "alice" in repr(entry)


def test_empty_and_comment_only_files() -> None:
    assert parse_publish_password("").entries == []
    parsed = parse_publish_password("# nothing\n\n")
    assert parsed.entries == [] and parsed.invalid == [] and parsed.comments == 2
