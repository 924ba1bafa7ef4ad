"""XEP-0004 data forms: building a form and reading a submitted one.

Pure functions over `Element`s; no I/O, no module state.  Only what the
server's own forms need: fields with a type, label, required flag and values,
a hidden FORM_TYPE (XEP-0068), and reading a ``type='submit'`` form back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from chatgate.vocabulary import ns
from chatgate.xml.element import Element

__all__ = ["FormField", "Submission", "build_form", "find_form", "read_submission"]

#: XEP-0004 §3.3 field types.
FIELD_TYPES = frozenset(
    {
        "boolean",
        "fixed",
        "hidden",
        "jid-multi",
        "jid-single",
        "list-multi",
        "list-single",
        "text-multi",
        "text-private",
        "text-single",
    }
)


@dataclass(frozen=True, slots=True)
class FormField:
    var: str
    type: str = "text-single"
    label: str | None = None
    required: bool = False
    values: tuple[str, ...] = ()
    #: what a list-single or list-multi field offers (XEP-0004 §3.3): values, each
    #: its own label
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.type not in FIELD_TYPES:
            raise ValueError(f"unknown data form field type {self.type!r}")


@dataclass(frozen=True, slots=True)
class Submission:
    """A submitted form: its FORM_TYPE (None when absent) and each field's values."""

    form_type: str | None
    values: dict[str, list[str]] = field(default_factory=dict)

    def first(self, var: str) -> str | None:
        """The field's first value, None when the field is absent or has none."""
        values = self.values.get(var)
        return values[0] if values else None


def build_form(
    form_type: str,
    fields: Iterable[FormField],
    *,
    title: str | None = None,
    instructions: str | None = None,
    form: str = "form",
) -> Element:
    """``<x xmlns='jabber:x:data' type=form>`` with a hidden FORM_TYPE first (XEP-0068 §3)."""
    x = Element("x", ns.DATA_FORMS, {"type": form})
    if title:
        x.sub("title", text=title)
    if instructions:
        x.sub("instructions", text=instructions)
    hidden = x.sub("field", attrs={"type": "hidden", "var": "FORM_TYPE"})
    hidden.sub("value", text=form_type)
    for f in fields:
        attrs = {"type": f.type, "var": f.var}
        if f.label:
            attrs["label"] = f.label
        el = x.sub("field", attrs=attrs)
        if f.required:
            el.sub("required")
        for value in f.values:
            el.sub("value", text=value)
        for option in f.options:
            el.sub("option", attrs={"label": option}).sub("value", text=option)
    return x


def find_form(parent: Element) -> Element | None:
    """The first data form child of `parent`, if any."""
    for child in parent.children:
        if isinstance(child, Element) and child.ns == ns.DATA_FORMS and child.name == "x":
            return child
    return None


def read_submission(x: Element) -> Submission:
    """Read a submitted form (XEP-0004 §3.2: type 'submit').

    Raises ValueError when it is not a submission or a field has no 'var'
    (XEP-0004 §3.2: every field of a submitted form MUST possess a 'var').
    """
    if x.get("type") != "submit":
        raise ValueError("the data form is not a submission (type='submit')")
    values: dict[str, list[str]] = {}
    for el in x.find_all("field", ns.DATA_FORMS):
        var = el.get("var")
        if not var:
            raise ValueError("a submitted field has no 'var'")
        values[var] = [v.text for v in el.find_all("value", ns.DATA_FORMS)]
    form_type = values.pop("FORM_TYPE", None)
    return Submission(form_type[0] if form_type else None, values)
