"""docs/registration.md documents every option of the modules it describes."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from chatgate.modules.legacy_auth import LegacyAuthOptions
from chatgate.modules.register import InviteToken, RegisterOptions

DOCS = Path(__file__).resolve().parents[3] / "docs" / "registration.md"


@pytest.mark.parametrize("model", [RegisterOptions, LegacyAuthOptions, InviteToken])
def test_every_option_has_a_docstring_and_a_row(model: type[BaseModel]) -> None:
    docs = DOCS.read_text()
    for name, field in model.model_fields.items():
        assert field.description, f"{model.__name__}.{name} has no docstring"
        assert f"| `{name}` |" in docs, f"{model.__name__}.{name} missing from {DOCS.name}"
