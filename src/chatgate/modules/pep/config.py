"""A PEP node's configuration (XEP-0060 §16.4 pubsub#node_config, the subset PEP
needs) and the data forms that carry it: the owner's configure form, publish-options
(XEP-0060 §7.1.5) and the configuration given at creation.

Pure: no I/O.  Reading a form raises `FormRejected` with the XEP-0060 condition
the caller answers with (a form that is not a submission, or a value out of range,
is ``bad-request``/``not-acceptable``; publish-options that do not match the node
are the caller's ``conflict`` + ``precondition-not-met``, decided in `matches`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from enum import StrEnum

from chatgate.modules.dataforms import FormField, build_form, read_submission
from chatgate.xml.element import Element

NODE_CONFIG = "http://jabber.org/protocol/pubsub#node_config"


class AccessModel(StrEnum):
    """Who may see items and get notifications (XEP-0060 §4.5, XEP-0163 §6)."""

    OPEN = "open"
    PRESENCE = "presence"
    ROSTER = "roster"
    WHITELIST = "whitelist"


class SendLast(StrEnum):
    """When the last published item is sent to a new interested entity."""

    NEVER = "never"
    ON_SUB = "on_sub"
    ON_SUB_AND_PRESENCE = "on_sub_and_presence"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    access_model: AccessModel = AccessModel.PRESENCE
    #: XEP-0163 §4.3: a PEP node keeps one item unless configured otherwise
    max_items: int = 1
    persist_items: bool = True
    send_last_published_item: SendLast = SendLast.ON_SUB_AND_PRESENCE
    notify_retract: bool = True
    notify_delete: bool = True
    deliver_payloads: bool = True
    #: roster groups whose members may see a node of access model "roster"
    roster_groups_allowed: tuple[str, ...] = ()
    title: str = ""

    def to_json(self) -> str:
        data = asdict(self)
        data["access_model"] = self.access_model.value
        data["send_last_published_item"] = self.send_last_published_item.value
        data["roster_groups_allowed"] = list(self.roster_groups_allowed)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> NodeConfig:
        data = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["access_model"] = AccessModel(known.get("access_model", "presence"))
        known["send_last_published_item"] = SendLast(
            known.get("send_last_published_item", SendLast.ON_SUB_AND_PRESENCE.value)
        )
        known["roster_groups_allowed"] = tuple(known.get("roster_groups_allowed", ()))
        return cls(**known)


class FormRejected(Exception):
    """A configuration form that cannot be used; `condition` is the RFC 6120 condition."""

    def __init__(self, condition: str, text: str) -> None:
        super().__init__(text)
        self.condition = condition
        self.text = text


#: form var -> NodeConfig field
_FIELDS = {
    "pubsub#access_model": "access_model",
    "pubsub#max_items": "max_items",
    "pubsub#persist_items": "persist_items",
    "pubsub#send_last_published_item": "send_last_published_item",
    "pubsub#notify_retract": "notify_retract",
    "pubsub#notify_delete": "notify_delete",
    "pubsub#deliver_payloads": "deliver_payloads",
    "pubsub#roster_groups_allowed": "roster_groups_allowed",
    "pubsub#title": "title",
}
#: roster groups a node may name (a roster item's groups are bounded likewise)
MAX_GROUPS = 100
_BOOLEANS = {"1": True, "true": True, "0": False, "false": False}


def read_options(x: Element, form_type: str, *, max_items_cap: int) -> dict[str, object]:
    """The NodeConfig fields a submitted form sets (only those it names).

    `form_type` is the FORM_TYPE the form must carry (NODE_CONFIG, or
    PUBLISH_OPTIONS); "max" for max_items means `max_items_cap`.  Raises
    FormRejected: bad-request for a form that is not a submission or has the
    wrong FORM_TYPE; not-acceptable for an unknown field or a bad value."""
    try:
        submission = read_submission(x)
    except ValueError as exc:
        raise FormRejected("bad-request", str(exc)) from None
    if submission.form_type != form_type:
        raise FormRejected("bad-request", f"the form's FORM_TYPE must be {form_type}")
    changes: dict[str, object] = {}
    for var, values in submission.values.items():
        name = _FIELDS.get(var)
        if name is None:
            raise FormRejected("not-acceptable", f"unsupported option {var}")
        if not values and name != "roster_groups_allowed":
            # A field sent back without a value (the form's own empty title):
            # left as it is (XEP-0004 §3.6); only a list may be emptied.
            continue
        changes[name] = _value(name, var, values, max_items_cap)
    return changes


def _value(name: str, var: str, values: list[str], cap: int) -> object:
    if name == "roster_groups_allowed":
        if len(values) > MAX_GROUPS or any(len(v) > 1023 for v in values):
            raise FormRejected("not-acceptable", f"{var}: at most {MAX_GROUPS} groups")
        return tuple(values)
    if len(values) != 1:
        raise FormRejected("not-acceptable", f"{var} takes one value")
    value = values[0].strip()
    try:
        if name == "access_model":
            return AccessModel(value)
        if name == "send_last_published_item":
            return SendLast(value)
    except ValueError:
        raise FormRejected("not-acceptable", f"{var}: unsupported value {value!r}") from None
    if name == "max_items":
        if value == "max":
            return cap
        if not value.isdigit() or int(value) < 1:
            raise FormRejected("not-acceptable", f"{var} must be 1 to {cap} or 'max'")
        # More than the cap means "as many as you keep", as 'max' does: converse.js
        # asks 9999 for its bookmarks node, and refusing it lost every bookmark.
        return min(int(value), cap)
    if name == "title":
        if len(value) > 1024:
            raise FormRejected("not-acceptable", f"{var} is too long")
        return value
    if value.lower() not in _BOOLEANS:
        raise FormRejected("not-acceptable", f"{var} is a boolean")
    return _BOOLEANS[value.lower()]


def apply(config: NodeConfig, changes: dict[str, object]) -> NodeConfig:
    return replace(config, **changes)  # type: ignore[arg-type]


def matches(config: NodeConfig, changes: dict[str, object]) -> bool:
    """Whether an existing node's configuration already has every value of
    `changes` (XEP-0060 §7.1.5: publish-options are preconditions).  Booleans
    compare as booleans, so "1" and "true" are the same."""
    return all(getattr(config, name) == value for name, value in changes.items())


def config_form(config: NodeConfig, max_items_cap: int) -> Element:
    """The owner's configure form (XEP-0060 §8.2.1), filled with `config`."""
    return build_form(
        NODE_CONFIG,
        [
            FormField(
                "pubsub#access_model",
                "list-single",
                "Who may subscribe and retrieve items",
                values=(config.access_model.value,),
                options=tuple(m.value for m in AccessModel),
            ),
            FormField(
                "pubsub#max_items",
                "text-single",
                f"Max items to persist (1 to {max_items_cap})",
                values=(str(config.max_items),),
            ),
            FormField(
                "pubsub#persist_items",
                "boolean",
                "Persist items",
                values=(_b(config.persist_items),),
            ),
            FormField(
                "pubsub#send_last_published_item",
                "list-single",
                "When to send the last item",
                values=(config.send_last_published_item.value,),
                options=tuple(m.value for m in SendLast),
            ),
            FormField(
                "pubsub#notify_retract",
                "boolean",
                "Notify retractions",
                values=(_b(config.notify_retract),),
            ),
            FormField(
                "pubsub#notify_delete",
                "boolean",
                "Notify node deletion",
                values=(_b(config.notify_delete),),
            ),
            FormField(
                "pubsub#deliver_payloads",
                "boolean",
                "Deliver payloads",
                values=(_b(config.deliver_payloads),),
            ),
            FormField(
                "pubsub#roster_groups_allowed",
                "list-multi",
                "Roster groups allowed (access model roster)",
                values=config.roster_groups_allowed,
            ),
            FormField(
                "pubsub#title",
                "text-single",
                "A friendly name",
                values=(config.title,) if config.title else (),
            ),
        ],
    )


def _b(value: bool) -> str:
    return "1" if value else "0"
