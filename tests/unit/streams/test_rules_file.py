"""The rules file: what ``rules export`` writes, ``rules import`` reads back."""

from __future__ import annotations

from chatgate.streams.policy import Rule
from chatgate.streams.rules_file import format_rules_file, parse_rules_file

RULES = [
    Rule.parse("publish,play live/* group:staff"),
    Rule.parse("play public/* anonymous"),
    Rule.parse("publish live/alice user:alice@example.org"),
    Rule.parse("play * group:night # shift"),
]


def test_export_reads_back_to_the_same_rules() -> None:
    text = format_rules_file(
        [("from chatgate.toml", RULES[:2]), ("stored", RULES[2:])], note="exported now"
    )
    parsed = parse_rules_file(text)
    assert [r.rule for r in parsed.rules] == RULES
    assert parsed.invalid == [] and parsed.duplicates == []
    assert text.startswith("# chatgate stream rules")
    assert "# exported now\n" in text
    assert "\n# from chatgate.toml\npublish,play live/* group:staff\n" in text


def test_empty_sections_are_left_out() -> None:
    text = format_rules_file([("configured", []), ("stored", RULES[:1])])
    assert "# configured" not in text
    assert parse_rules_file(text).rules[0].rule == RULES[0]


def test_comments_blank_lines_crlf_and_a_bom_are_ignored() -> None:
    text = "\ufeff# a comment\r\n\r\n   # indented\r\n  play public/* anonymous  \r\n"
    parsed = parse_rules_file(text)
    assert [(r.line, r.rule) for r in parsed.rules] == [(4, RULES[1])]


def test_every_invalid_line_is_reported_with_its_reason() -> None:
    text = "publish live/*\nplay live/a* token\npublish live/* grp:x\nplay ok/* token\n"
    parsed = parse_rules_file(text)
    assert [r.line for r in parsed.rules] == [4]
    lines = [line for line, _ in parsed.invalid]
    assert lines == [1, 2, 3]
    reasons = dict(parsed.invalid)
    assert "ACTIONS PATTERN GRANTEE" in reasons[1]
    assert "pattern" in reasons[2] and "'*' not allowed" in reasons[2]
    assert "grantee" in reasons[3]


def test_spellings_of_one_rule_are_one_rule() -> None:
    text = (
        "publish,play live/* user:Alice@Example.ORG\n"
        "play,publish  live/*   user:alice@example.org\n"
    )
    parsed = parse_rules_file(text)
    assert len(parsed.rules) == 1
    assert parsed.duplicates == [(2, 1)]
    assert str(parsed.rules[0].rule) == "publish,play live/* user:alice@example.org"
