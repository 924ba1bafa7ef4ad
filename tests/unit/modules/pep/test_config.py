"""Node configuration forms (XEP-0060 §16.4 subset): values read, bounded, and
the configuration round-trips through its stored JSON."""

from __future__ import annotations

import pytest

from chatgate.modules.pep.config import (
    NODE_CONFIG,
    AccessModel,
    FormRejected,
    NodeConfig,
    SendLast,
    apply,
    config_form,
    matches,
    read_options,
)
from chatgate.vocabulary.ns import PUBLISH_OPTIONS
from chatgate.xml.framed import parse_fragment


def form(form_type: str, fields: dict[str, list[str]], kind: str = "submit"):  # type: ignore[no-untyped-def]
    inner = f"<field var='FORM_TYPE' type='hidden'><value>{form_type}</value></field>"
    for var, values in fields.items():
        inner += (
            f"<field var='{var}'>" + "".join(f"<value>{v}</value>" for v in values) + "</field>"
        )
    return parse_fragment(f"<x xmlns='jabber:x:data' type='{kind}'>{inner}</x>".encode(), "")


def test_values_are_read_and_max_means_the_cap() -> None:
    changes = read_options(
        form(
            PUBLISH_OPTIONS,
            {
                "pubsub#access_model": ["whitelist"],
                "pubsub#max_items": ["max"],
                "pubsub#persist_items": ["1"],
                "pubsub#send_last_published_item": ["never"],
                "pubsub#roster_groups_allowed": ["a", "b"],
            },
        ),
        PUBLISH_OPTIONS,
        max_items_cap=256,
    )
    assert changes == {
        "access_model": AccessModel.WHITELIST,
        "max_items": 256,
        "persist_items": True,
        "send_last_published_item": SendLast.NEVER,
        "roster_groups_allowed": ("a", "b"),
    }
    config = apply(NodeConfig(), changes)
    assert matches(config, {"persist_items": True, "access_model": AccessModel.WHITELIST})
    assert not matches(config, {"access_model": AccessModel.PRESENCE})
    assert NodeConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    ("fields", "condition"),
    [
        ({"pubsub#max_items": ["0"]}, "not-acceptable"),
        ({"pubsub#max_items": ["-3"]}, "not-acceptable"),
        ({"pubsub#max_items": ["1", "2"]}, "not-acceptable"),
        ({"pubsub#access_model": ["authorize"]}, "not-acceptable"),
        ({"pubsub#persist_items": ["maybe"]}, "not-acceptable"),
        ({"pubsub#title": ["t" * 2000]}, "not-acceptable"),
        ({"pubsub#roster_groups_allowed": [f"g{n}" for n in range(101)]}, "not-acceptable"),
        ({"pubsub#unknown": ["1"]}, "not-acceptable"),
    ],
)
def test_bad_values_are_refused(fields: dict[str, list[str]], condition: str) -> None:
    with pytest.raises(FormRejected) as refused:
        read_options(form(NODE_CONFIG, fields), NODE_CONFIG, max_items_cap=256)
    assert refused.value.condition == condition


def test_not_a_submission_or_wrong_form_type_is_bad_request() -> None:
    with pytest.raises(FormRejected) as refused:
        read_options(form(NODE_CONFIG, {}, kind="form"), NODE_CONFIG, max_items_cap=5)
    assert refused.value.condition == "bad-request"
    with pytest.raises(FormRejected) as refused:
        read_options(form(PUBLISH_OPTIONS, {}), NODE_CONFIG, max_items_cap=5)
    assert refused.value.condition == "bad-request"


def test_the_configure_form_shows_the_configuration() -> None:
    x = config_form(NodeConfig(max_items=7, access_model=AccessModel.OPEN), 256)
    values = {
        f.get("var"): [v.text for v in f.find_all("value", "jabber:x:data")]
        for f in x.find_all("field", "jabber:x:data")
    }
    assert values["FORM_TYPE"] == [NODE_CONFIG]
    assert values["pubsub#max_items"] == ["7"]
    assert values["pubsub#access_model"] == ["open"]


def test_max_items_above_the_cap_means_the_cap_as_max_does() -> None:
    # converse.js asks 9999 for its XEP-0402 bookmarks node.
    for asked in ("257", "9999", "max"):
        config = read_options(
            form(NODE_CONFIG, {"pubsub#max_items": [asked]}), NODE_CONFIG, max_items_cap=256
        )
        assert config["max_items"] == 256


def test_the_configure_form_offers_its_choices_and_comes_back_as_it_was_given() -> None:
    config = NodeConfig()
    x = config_form(config, 256)
    options = {
        f.get("var"): [o.find_all("value")[0].text for o in f.find_all("option")]
        for f in x.find_all("field")
        if f.get("type") == "list-single"
    }
    assert options["pubsub#access_model"] == ["open", "presence", "roster", "whitelist"]
    assert options["pubsub#send_last_published_item"] == [
        "never",
        "on_sub",
        "on_sub_and_presence",
    ]
    # Submitted back with its empty title and one change: accepted, the title left.
    x.attrs["type"] = "submit"
    for f in x.find_all("field"):
        if f.get("var") == "pubsub#max_items":
            for value in f.find_all("value"):
                value.set_text("5")
    changes = read_options(x, NODE_CONFIG, max_items_cap=256)
    assert changes["max_items"] == 5 and "title" not in changes
