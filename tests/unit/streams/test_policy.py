"""The stream policy (`chatgate.streams.policy`): names, patterns, grantees and how
rules combine.

`_reference_decide` below is a second, deliberately naive implementation of the
module docstring's rules (a linear scan over the list, patterns compared segment
by segment); hypothesis checks that the index agrees with it.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatgate.streams.policy import (
    MAX_NAME_BYTES,
    MAX_SEGMENTS,
    Decision,
    DecisionReason,
    Grantee,
    GranteeKind,
    InvalidPattern,
    InvalidStreamName,
    Rule,
    RuleSet,
    Subject,
    SubjectKind,
    check_stream_name,
    decide,
    join_stream_name,
)
from chatgate.streams.tokens import StreamAction

PUBLISH = StreamAction.PUBLISH
PLAY = StreamAction.PLAY
ALICE = Subject.for_account("alice@example.org")
BOB = Subject.for_account("bob@example.org")
ANON = Subject.anonymous()

EXAMPLE_RULES = RuleSet(
    Rule.parse(text)
    for text in (
        "play live/* anonymous",
        "publish live/alice user:alice@example.org",
        "publish live/* group:broadcasters",
        "play staff/* group:staff",
        "play staff/* token",
        "publish * group:admins",
    )
)


# -- stream names --------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "live/alice",
        "cam1",
        "live/alice/cam2",
        "live/a.b",
        "live/a..b",  # dots inside a segment are harmless
        "live/user@example.org",
        "live/a-b_c~d+e:f",
        "live/café",  # NFC
        "live/日本語",
        "/".join(["s"] * MAX_SEGMENTS),
        "live/" + "a" * (MAX_NAME_BYTES - 5),
    ],
)
def test_valid_names_are_returned_unchanged(name: str) -> None:
    assert check_stream_name(name) is name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("/live/alice", "empty segment"),
        ("live/alice/", "empty segment"),
        ("live//alice", "empty segment"),
        ("live/../bob", "segment starts with '.'"),
        ("live/./alice", "segment starts with '.'"),
        ("..", "segment starts with '.'"),
        ("live/.hidden", "segment starts with '.'"),
        ("live/%2e%2e/bob", "'%'"),
        ("live/alice%00", "'%'"),
        ("live/alice&name=bob", "'&'"),
        ("live/alice?token=x", "'?'"),
        ("live/alice#x", "'#'"),
        ("live/ali ce", "' '"),
        ("live/alice\0", "'\\x00'"),
        ("live/alice\r\nx", "'\\r'"),
        ("live/alice\x7f", "'\\x7f'"),
        ("live\\alice", "'\\\\'"),
        ("live/*", "'*'"),
        ("live/<script>", "'<'"),
        ('live/"a"', "'\"'"),
        ("live/alice\x85", "U+0085"),  # C1 control
        ("live/ali\u200bce", "U+200B"),  # zero-width space (Cf)
        ("live/alice\u202e", "U+202E"),  # right-to-left override
        ("live/ali\u00a0ce", "U+00A0"),  # no-break space (Zs)
        ("live/\ue000", "U+E000"),  # private use
        ("live/\ud800", "lone surrogate"),
        ("live/cafe\u0301", "NFKC"),  # NFD spelling of café
        ("live/\uff41\uff4c\uff49\uff43\uff45", "NFKC"),  # fullwidth "alice"
        ("live/\u2024\u2024", "NFKC"),  # ONE DOT LEADER x2 -> ".." under NFKC
        ("live\uff0fbob", "NFKC"),  # fullwidth solidus
        ("live/" + "a" * (MAX_NAME_BYTES - 4), "longer than"),
        ("live/" + "é" * 126, "longer than"),  # 256 UTF-8 bytes in 131 characters
        ("/".join(["s"] * (MAX_SEGMENTS + 1)), "segments"),
    ],
)
def test_invalid_names_are_refused_with_a_reason(name: str, why: str) -> None:
    with pytest.raises(InvalidStreamName, match="invalid stream name") as caught:
        check_stream_name(name)
    assert why in str(caught.value)


def test_very_long_name_is_refused_quickly() -> None:
    with pytest.raises(InvalidStreamName, match="longer than"):
        check_stream_name("live/" + "a" * 10_000_000)
    with pytest.raises(InvalidStreamName, match="longer than"):
        check_stream_name("live/" + "é" * 1_000_000)


def test_non_text_name_is_refused() -> None:
    with pytest.raises(InvalidStreamName, match="not text"):
        check_stream_name(b"live/alice")  # type: ignore[arg-type]


def test_join_stream_name() -> None:
    assert join_stream_name("live", "alice") == "live/alice"
    assert join_stream_name("live", "a/b") == "live/a/b"
    with pytest.raises(InvalidStreamName):
        join_stream_name("live", "")
    with pytest.raises(InvalidStreamName):
        join_stream_name("", "alice")
    with pytest.raises(InvalidStreamName):
        join_stream_name("live", "alice&name=bob")


# -- patterns ------------------------------------------------------------------


def _can_publish(pattern: str, stream: str) -> bool:
    rules = RuleSet([Rule(pattern, [PUBLISH], "anonymous")])
    return rules.decide(ANON, stream, PUBLISH).allowed


@pytest.mark.parametrize(
    ("pattern", "stream", "matches"),
    [
        ("live/alice", "live/alice", True),
        ("live/alice", "live/alice/cam2", False),
        ("live/alice", "live/alicex", False),
        ("live/alice", "live/Alice", False),  # case-sensitive, as media servers are
        ("live/alice", "live", False),
        ("live/*", "live/a", True),
        ("live/*", "live/a/b", True),  # any depth
        ("live/*", "live/a/b/c/d/e/f/g", True),
        ("live/*", "live", False),  # the prefix itself is not under itself
        ("live/*", "lively/a", False),  # segment boundary
        ("live/*", "xlive/a", False),
        ("live/*", "other/live/a", False),
        ("live/a/*", "live/a/b", True),
        ("live/a/*", "live/a", False),
        ("live/a/*", "live/ab/c", False),
        ("*", "x", True),
        ("*", "live/a/b", True),
    ],
)
def test_pattern_matching(pattern: str, stream: str, matches: bool) -> None:
    assert _can_publish(pattern, stream) is matches


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        "live/al*",
        "*/alice",
        "live/*/x",
        "live/**",
        "live*",
        "**",
        "/*",
        "live//*",
        "live/../*",
        "live/%2e%2e/*",
        "live/*/",
        "/".join(["s"] * MAX_SEGMENTS) + "/*",  # nothing can be under it
    ],
)
def test_bad_patterns_are_configuration_errors(pattern: str) -> None:
    with pytest.raises(InvalidPattern):
        Rule(pattern, [PUBLISH], "anonymous")


def test_invalid_stream_is_denied_even_under_a_grant_of_everything() -> None:
    rules = RuleSet([Rule("*", [PUBLISH, PLAY], "anonymous")])
    for stream in (
        "live/alice&name=bob",
        "live/../bob",
        "live/%2e%2e/bob",
        "live/alice\0",
        "live/" + "a" * 300,
        "",
    ):
        for action in (PUBLISH, PLAY):
            decision = rules.decide(ALICE, stream, action)
            assert decision == Decision(False, DecisionReason.INVALID_STREAM)


def test_injected_field_does_not_reach_another_users_stream() -> None:
    # The nginx-rtmp attack: alice appends &name=bob; if an adapter ever passed the
    # joined text on, it is invalid rather than "live/alice" or "live/bob".
    rules = RuleSet(
        [
            Rule("live/alice", [PUBLISH], "user:alice@example.org"),
            Rule("live/bob", [PUBLISH], "user:bob@example.org"),
        ]
    )
    assert rules.decide(ALICE, "live/alice", PUBLISH).allowed
    assert not rules.decide(ALICE, "live/bob", PUBLISH).allowed
    assert rules.decide(ALICE, "live/alice&name=bob", PUBLISH).reason is (
        DecisionReason.INVALID_STREAM
    )
    assert rules.decide(ALICE, "live/alice/../bob", PUBLISH).reason is (
        DecisionReason.INVALID_STREAM
    )


# -- deny by default and combining ---------------------------------------------


def test_no_rules_denies_everything() -> None:
    empty = RuleSet([])
    assert len(empty) == 0
    for subject in (ANON, ALICE, Subject.token_bearer("live/a", PLAY)):
        assert empty.decide(subject, "live/a", PLAY) == Decision(False, DecisionReason.NO_RULE)
    for subject in (ANON, ALICE, Subject.token_bearer("live/a", PUBLISH)):
        assert empty.decide(subject, "live/a", PUBLISH).reason is DecisionReason.NO_RULE


def test_rule_for_another_action_does_not_grant() -> None:
    rules = RuleSet([Rule("live/*", [PLAY], "anonymous")])
    assert rules.decide(ALICE, "live/a", PUBLISH).reason is DecisionReason.NO_RULE


def test_rules_for_others_deny_with_not_granted() -> None:
    rules = RuleSet([Rule("live/alice", [PUBLISH], "user:alice@example.org")])
    assert rules.decide(BOB, "live/alice", PUBLISH) == Decision(False, DecisionReason.NOT_GRANTED)
    assert rules.decide(ANON, "live/alice", PUBLISH).reason is DecisionReason.NOT_GRANTED


def test_public_play_private_publish() -> None:
    rules = RuleSet(
        [
            Rule("live/*", [PLAY], "anonymous"),
            Rule("live/alice", [PUBLISH], "user:alice@example.org"),
        ]
    )
    assert rules.decide(ANON, "live/alice", PLAY).allowed
    assert rules.decide(BOB, "live/alice", PLAY).allowed  # anonymous admits accounts too
    assert rules.decide(Subject.token_bearer("live/alice", PLAY), "live/alice", PLAY).allowed
    assert not rules.decide(ANON, "live/alice", PUBLISH).allowed
    assert not rules.decide(BOB, "live/alice", PUBLISH).allowed
    assert rules.decide(ALICE, "live/alice", PUBLISH).allowed


def test_any_grant_allows_and_adding_a_rule_never_removes_a_right() -> None:
    admins = Rule("*", [PUBLISH], "group:admins")
    admin = Subject.for_account("root@example.org", ["admins"])
    before = RuleSet([admins])
    after = RuleSet([admins, Rule("live/alice", [PUBLISH], "user:alice@example.org")])
    assert before.decide(admin, "live/alice", PUBLISH).allowed
    assert after.decide(admin, "live/alice", PUBLISH).allowed  # not "most specific wins"
    assert after.decide(ALICE, "live/alice", PUBLISH).allowed


def test_rule_order_does_not_change_the_outcome() -> None:
    rules = list(EXAMPLE_RULES.rules)
    reversed_rules = RuleSet(reversed(rules))
    subjects = [
        ANON,
        ALICE,
        BOB,
        Subject.for_account("carol@example.org", ["staff", "broadcasters"]),
        Subject.for_account("root@example.org", ["admins"]),
        Subject.token_bearer("staff/meeting", PLAY),
    ]
    for subject in subjects:
        for stream in ("live/alice", "staff/meeting", "other/x", "live/alice/cam2"):
            for action in (PUBLISH, PLAY):
                assert (
                    EXAMPLE_RULES.decide(subject, stream, action).allowed
                    == reversed_rules.decide(subject, stream, action).allowed
                )


def test_the_docstring_examples() -> None:
    rules = EXAMPLE_RULES
    staff = Subject.for_account("carol@example.org", ["staff"])
    broadcaster = Subject.for_account("dave@example.org", ["broadcasters"])
    admin = Subject.for_account("root@example.org", ["admins"])
    assert rules.decide(ANON, "live/alice", PLAY).allowed
    assert rules.decide(ALICE, "live/alice", PUBLISH).allowed
    assert rules.decide(broadcaster, "live/alice", PUBLISH).allowed
    assert rules.decide(admin, "live/alice", PUBLISH).allowed
    assert rules.decide(BOB, "live/alice", PUBLISH).reason is DecisionReason.NOT_GRANTED
    assert rules.decide(staff, "staff/meeting", PLAY).allowed
    assert not rules.decide(BOB, "staff/meeting", PLAY).allowed
    assert rules.decide(Subject.token_bearer("staff/meeting", PLAY), "staff/meeting", PLAY).allowed
    assert rules.decide(Subject.token_bearer("live/x", PLAY), "staff/meeting", PLAY).reason is (
        DecisionReason.TOKEN_MISMATCH
    )
    assert rules.decide(admin, "other/x", PUBLISH).allowed
    assert rules.decide(staff, "other/x", PUBLISH).reason is DecisionReason.NOT_GRANTED
    assert rules.decide(admin, "other/x", PLAY).reason is DecisionReason.NO_RULE
    assert rules.decide(admin, "live/alice&name=bob", PUBLISH).reason is (
        DecisionReason.INVALID_STREAM
    )
    assert rules.decide(admin, "live/../bob", PUBLISH).reason is DecisionReason.INVALID_STREAM


# -- grantees --------------------------------------------------------------------


def test_user_rule_is_the_seeds_allowed_stream_name() -> None:
    # Wowza seed: "is user allowed to stream on given streamname": a rule per user.
    rules = RuleSet(
        [
            Rule("live/alice", [PUBLISH], Grantee.user("alice@example.org")),
            Rule("live/bob", [PUBLISH], Grantee.user("bob@example.org")),
        ]
    )
    assert rules.decide(ALICE, "live/alice", PUBLISH).allowed
    assert not rules.decide(ALICE, "live/bob", PUBLISH).allowed
    assert not rules.decide(BOB, "live/alice", PUBLISH).allowed
    assert not rules.decide(ALICE, "live/alice", PLAY).allowed  # publish only


def test_user_names_are_prepared_on_both_sides() -> None:
    rules = RuleSet([Rule("live/alice", [PUBLISH], "user:Alice@Example.ORG")])
    assert rules.rules[0].grantee == Grantee(GranteeKind.USER, "alice@example.org")
    assert rules.decide(Subject.for_account("ALICE@example.org"), "live/alice", PUBLISH).allowed
    # Another domain is another account.
    assert not rules.decide(Subject.for_account("alice@example.net"), "live/alice", PUBLISH).allowed


@pytest.mark.parametrize(
    "text",
    [
        "user:example.org",  # no localpart
        "user:alice@example.org/phone",  # full JID
        "user:",
        "user:a@b@c",
        "group:",
        "group: staff",
        "group:staff\n",
        "group:" + "g" * 300,
        "everyone",
        "Anonymous",
        "",
        "users:alice@example.org",
    ],
)
def test_bad_grantees_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Grantee.parse(text)


def test_a_hand_built_unprepared_subject_matches_no_user_rule() -> None:
    rules = RuleSet([Rule("live/alice", [PUBLISH], "user:alice@example.org")])
    raw = Subject(SubjectKind.ACCOUNT, "Alice@example.org")
    assert not rules.decide(raw, "live/alice", PUBLISH).allowed


def test_group_grants() -> None:
    rules = RuleSet(
        [
            Rule("studio/*", [PUBLISH, PLAY], "group:studio crew"),
            Rule("studio/*", [PLAY], "group:viewers"),
        ]
    )
    crew = Subject.for_account("carol@example.org", ["studio crew", "other"])
    viewer = Subject.for_account("dave@example.org", ["viewers"])
    assert rules.decide(crew, "studio/a", PUBLISH).allowed
    assert rules.decide(crew, "studio/a", PLAY).allowed
    assert rules.decide(viewer, "studio/a", PLAY).allowed
    assert not rules.decide(viewer, "studio/a", PUBLISH).allowed
    assert not rules.decide(ALICE, "studio/a", PLAY).allowed
    # Group names are case-sensitive and exact.
    assert not rules.decide(
        Subject.for_account("e@example.org", ["Viewers"]), "studio/a", PLAY
    ).allowed
    # A token holder or an anonymous caller is in no group.
    assert not rules.decide(ANON, "studio/a", PLAY).allowed


def test_authenticated_admits_every_account_and_nobody_else() -> None:
    rules = RuleSet([Rule("members/*", [PLAY], "authenticated")])
    assert rules.decide(ALICE, "members/x", PLAY).allowed
    assert rules.decide(BOB, "members/x", PLAY).allowed
    assert rules.decide(ANON, "members/x", PLAY).reason is DecisionReason.NOT_GRANTED
    token = Subject.token_bearer("members/x", PLAY)
    assert rules.decide(token, "members/x", PLAY).reason is DecisionReason.NOT_GRANTED


def test_token_holders_are_admitted_only_where_a_token_rule_says() -> None:
    rules = RuleSet(
        [
            Rule("events/*", [PLAY], "token"),
            Rule("live/alice", [PUBLISH], "user:alice@example.org"),
        ]
    )
    holder = Subject.token_bearer("events/final", PLAY, user="alice@example.org")
    assert rules.decide(holder, "events/final", PLAY) == Decision(
        True, DecisionReason.GRANTED, rules.rules[0]
    )
    # A token carrying alice's name is not alice's login.
    alice_token = Subject.token_bearer("live/alice", PUBLISH, user="alice@example.org")
    assert rules.decide(alice_token, "live/alice", PUBLISH).reason is DecisionReason.NOT_GRANTED
    # Token rules do not admit accounts or anonymous callers.
    assert not rules.decide(ALICE, "events/final", PLAY).allowed
    assert not rules.decide(ANON, "events/final", PLAY).allowed


@pytest.mark.parametrize(
    ("token_stream", "token_action", "stream", "action"),
    [
        ("events/a", PLAY, "events/b", PLAY),
        ("events/a", PUBLISH, "events/a", PLAY),
        ("events/a", PLAY, "events/a/sub", PLAY),
        ("events/a", PLAY, "events/A", PLAY),
    ],
)
def test_token_for_another_stream_or_action_is_refused(
    token_stream: str, token_action: StreamAction, stream: str, action: StreamAction
) -> None:
    rules = RuleSet([Rule("*", [PLAY, PUBLISH], "token")])
    holder = Subject.token_bearer(token_stream, token_action)
    assert rules.decide(holder, stream, action) == Decision(False, DecisionReason.TOKEN_MISMATCH)


def test_anonymous_grant_admits_everyone() -> None:
    rules = RuleSet([Rule("public/*", [PLAY], "anonymous")])
    for subject in (ANON, ALICE, Subject.token_bearer("public/x", PLAY)):
        assert rules.decide(subject, "public/x", PLAY).allowed


# -- which rule is reported ------------------------------------------------------


def test_matched_rule_is_the_most_specific_then_the_earliest() -> None:
    everything = Rule("*", [PUBLISH], "authenticated")
    prefix = Rule("live/*", [PUBLISH], "authenticated")
    deeper = Rule("live/alice/*", [PUBLISH], "authenticated")
    group = Rule("live/alice/cam", [PUBLISH], "group:g")
    user = Rule("live/alice/cam", [PUBLISH], "user:alice@example.org")
    rules = RuleSet([everything, prefix, deeper, group, user])
    member = Subject.for_account("alice@example.org", ["g"])
    assert rules.decide(member, "live/alice/cam", PUBLISH).matched_rule is group
    assert rules.decide(ALICE, "live/alice/cam", PUBLISH).matched_rule is user
    assert rules.decide(BOB, "live/alice/cam", PUBLISH).matched_rule is deeper
    assert rules.decide(BOB, "live/alice/x", PUBLISH).matched_rule is deeper
    assert rules.decide(BOB, "live/bob", PUBLISH).matched_rule is prefix
    assert rules.decide(BOB, "other", PUBLISH).matched_rule is everything


def test_earliest_of_several_groups_is_reported_whatever_the_set_order() -> None:
    rules = RuleSet([Rule("x/*", [PLAY], f"group:g{i}") for i in range(20)])
    member = Subject.for_account("a@example.org", [f"g{i}" for i in range(19, 4, -1)])
    assert rules.decide(member, "x/y", PLAY).matched_rule is rules.rules[5]


# -- actions, rule text, the function form -------------------------------------------


def test_actions_as_text_and_unknown_actions() -> None:
    rules = RuleSet([Rule("live/*", ["play"], "anonymous")])
    assert rules.decide(ANON, "live/a", "play").allowed
    assert rules.decide(ANON, "live/a", "PLAY").reason is DecisionReason.INVALID_ACTION
    assert rules.decide(ANON, "live/a", "read").reason is DecisionReason.INVALID_ACTION
    assert rules.decide(ANON, "live/a", "").reason is DecisionReason.INVALID_ACTION
    with pytest.raises(ValueError):
        Rule("live/*", ["read"], "anonymous")
    with pytest.raises(ValueError):
        Rule("live/*", [], "anonymous")
    with pytest.raises(ValueError):
        Subject.token_bearer("live/a", "read")


@pytest.mark.parametrize(
    "text",
    [
        "publish live/alice user:alice@example.org",
        "play live/* anonymous",
        "publish,play * group:studio crew",
        "play staff/* token",
        "publish live/a/* authenticated",
    ],
)
def test_rule_text_round_trip(text: str) -> None:
    rule = Rule.parse(text)
    assert str(rule) == text
    assert Rule.parse(str(rule)) == rule


def test_rule_text_errors() -> None:
    for text in ("publish live/*", "", "publish live/* anonymous extra", "write live/* token"):
        with pytest.raises(ValueError):
            Rule.parse(text)
    assert Rule.parse("  play,publish   live/*   anonymous  ") == Rule(
        "live/*", [PUBLISH, PLAY], "anonymous"
    )


def test_decide_function_is_the_method() -> None:
    assert decide(EXAMPLE_RULES, ANON, "live/alice", PLAY) == EXAMPLE_RULES.decide(
        ANON, "live/alice", PLAY
    )


# -- property: the index agrees with a naive reading of the docstring ----------------


def _reference_matches(pattern: str, stream: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith("/*"):
        base = pattern[:-2].split("/")
        parts = stream.split("/")
        return len(parts) > len(base) and parts[: len(base)] == base
    return pattern == stream


def _reference_admits(grantee: Grantee, subject: Subject) -> bool:
    kind = grantee.kind
    if kind is GranteeKind.ANONYMOUS:
        return True
    if kind is GranteeKind.TOKEN:
        return subject.kind is SubjectKind.TOKEN
    if subject.kind is not SubjectKind.ACCOUNT:
        return False
    if kind is GranteeKind.AUTHENTICATED:
        return True
    if kind is GranteeKind.USER:
        return grantee.name == subject.account
    return grantee.name in subject.groups


def _reference_decide(
    rules: list[Rule], subject: Subject, stream: str, action: StreamAction
) -> bool:
    try:
        check_stream_name(stream)
    except InvalidStreamName:
        return False
    if subject.kind is SubjectKind.TOKEN and (
        subject.token_stream != stream or subject.token_action != action
    ):
        return False
    return any(
        action in rule.actions
        and _reference_matches(rule.pattern, stream)
        and _reference_admits(rule.grantee, subject)
        for rule in rules
    )


_segment = st.sampled_from(["a", "b", "ab", "live", "x.y", "A", "é", "..", ".", "", "%2e", "*"])
_names = st.lists(_segment, min_size=1, max_size=MAX_SEGMENTS + 1).map("/".join)
_patterns = st.one_of(
    st.just("*"),
    _names.filter(lambda n: "*" not in n),
    _names.filter(lambda n: "*" not in n).map(lambda n: n + "/*"),
)
_grantees = st.sampled_from(
    [
        "anonymous",
        "authenticated",
        "token",
        "user:alice@example.org",
        "user:bob@example.org",
        "group:g1",
        "group:g2",
    ]
)
_actions = st.sampled_from([PUBLISH, PLAY])


@st.composite
def _rules(draw: st.DrawFn) -> Rule | None:
    try:
        return Rule(
            draw(_patterns),
            draw(st.lists(_actions, min_size=1, max_size=2)),
            draw(_grantees),
        )
    except (InvalidPattern, ValueError):
        return None


@st.composite
def _subjects(draw: st.DrawFn) -> Subject:
    kind = draw(st.sampled_from(["anon", "alice", "bob", "carol", "token"]))
    if kind == "anon":
        return ANON
    if kind == "token":
        return Subject.token_bearer(draw(_names), draw(_actions))
    groups = draw(st.lists(st.sampled_from(["g1", "g2", "g3"]), max_size=3))
    return Subject.for_account(f"{kind}@example.org", groups)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(_rules(), max_size=12),
    _subjects(),
    st.one_of(_names, st.text(max_size=20)),
    _actions,
)
def test_index_agrees_with_the_reference(
    maybe_rules: list[Rule | None], subject: Subject, stream: str, action: StreamAction
) -> None:
    rules = [rule for rule in maybe_rules if rule is not None]
    decision = RuleSet(rules).decide(subject, stream, action)
    assert decision.allowed == _reference_decide(rules, subject, stream, action)
    if decision.allowed:
        assert decision.reason is DecisionReason.GRANTED
        rule = decision.matched_rule
        assert rule is not None
        assert action in rule.actions
        assert _reference_matches(rule.pattern, stream)
        assert _reference_admits(rule.grantee, subject)
    else:
        assert decision.matched_rule is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_decided_without_raising(stream: str) -> None:
    decision = EXAMPLE_RULES.decide(ALICE, stream, PLAY)
    valid = True
    try:
        check_stream_name(stream)
    except InvalidStreamName:
        valid = False
    assert decision.allowed == (valid and _reference_matches("live/*", stream))
    if not valid:
        assert decision.reason is DecisionReason.INVALID_STREAM


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_valid_names_are_nfkc_stable_and_free_of_query_characters(stream: str) -> None:
    import unicodedata

    try:
        check_stream_name(stream)
    except InvalidStreamName:
        return
    assert unicodedata.normalize("NFKC", stream) == stream
    assert not set(stream) & set("%?&=#*\\ \0\r\n\t")
    assert all(segment and not segment.startswith(".") for segment in stream.split("/"))
