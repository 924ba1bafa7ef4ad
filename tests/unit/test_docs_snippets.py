"""Every `toml` block in docs/ is a configuration the server accepts.

Operators copy these snippets; one that names an option that does not exist, or
a mechanism on a host that may not offer it, would stop their server at start.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from chatgate.config import Config, section
from chatgate.modules.legacy_auth import LegacyAuthOptions
from chatgate.modules.register import RegisterOptions
from chatgate.sasl.registry import builtin_mechanisms
from chatgate.vhost import validate_host_mechanisms

DOCS = Path(__file__).resolve().parents[2] / "docs"
#: pages whose snippets name mechanisms of packages that are not installed here
PLUGIN_PAGES = {"sasl-plugins.md"}
#: a block right after `<!-- verbatim: PATH -->` is a copy of a file (e.g. a plugin's
#: pyproject.toml), checked against that file by the page's own test, not a configuration
SNIPPETS = [
    pytest.param(page.name, block, id=f"{page.name}#{n}")
    for page in sorted(DOCS.glob("*.md"))
    for n, (copied, block) in enumerate(
        re.findall(r"(<!-- verbatim: \S+ -->\n)?```toml\n(.*?)```", page.read_text(), re.S)
    )
    if not copied
]


#: the `[modules.NAME]` tables the pages show, with the model each module checks
MODULE_OPTIONS = {"register": RegisterOptions, "legacy_auth": LegacyAuthOptions}


@pytest.mark.parametrize(("page", "snippet"), SNIPPETS)
def test_the_snippet_is_a_valid_configuration(page: str, snippet: str) -> None:
    config = Config.model_validate(tomllib.loads(snippet))
    for name in config.modules:
        assert name in MODULE_OPTIONS, f"[modules.{name}] is not checked here yet"
        section(config, name, MODULE_OPTIONS[name])
    if page not in PLUGIN_PAGES:
        validate_host_mechanisms(config, builtin_mechanisms(load_entry_points=False))


def test_there_are_snippets_to_check() -> None:
    assert len(SNIPPETS) >= 10
