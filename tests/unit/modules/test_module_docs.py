"""docs/configuration.md documents every option of every built-in module (those of
registration and legacy authentication are in docs/registration.md, which its own
test checks), each under its module's heading, with the docstring `check` and
the model use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chatgate.modules.base import options_model
from chatgate.modules.registry import builtin_modules

DOCS = Path(__file__).resolve().parents[3] / "docs"
ELSEWHERE = {"register", "legacy_auth"}  # docs/registration.md
REGISTRY = builtin_modules(load_entry_points=False)
DOCUMENTED = [
    name
    for name in REGISTRY.names()
    if name not in ELSEWHERE and options_model(REGISTRY.get(name)).model_fields
]


def section(text: str, name: str) -> str:
    """The part of configuration.md under `### [modules.NAME]`, up to the next heading."""
    start = text.index(f"### `[modules.{name}]`")
    following = re.search(r"^#{1,3} ", text[start + 4 :], re.M)
    return text[start : start + 4 + following.start()] if following else text[start:]


@pytest.mark.parametrize("name", DOCUMENTED)
def test_every_option_of_the_module_has_a_docstring_and_a_row(name: str) -> None:
    text = (DOCS / "configuration.md").read_text()
    assert f"### `[modules.{name}]`" in text, f"[modules.{name}] missing from configuration.md"
    rows = section(text, name)
    for option, field in options_model(REGISTRY.get(name)).model_fields.items():
        assert field.description, f"modules.{name}.{option} has no docstring"
        assert f"| `{field.alias or option}` |" in rows, f"modules.{name}.{option} undocumented"
    page = re.search(r"See \[([\w.-]+)\]", rows)
    assert page is not None and (DOCS / page.group(1)).exists(), f"{name}: no page linked"


def test_the_new_features_are_among_the_documented_modules() -> None:
    for name in ("muc", "mam", "carbons", "blocking", "pep", "upload", "stream_management"):
        assert name in DOCUMENTED
