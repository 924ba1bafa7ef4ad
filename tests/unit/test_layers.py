"""The package's layers, checked from the source (issue 10 item 11): the vocabulary
imports nothing of ours; the parser, SASL, the credential providers and the
configuration never import the session layer; transports never import SASL.
Imports for type checking count too: an arrow that runs up is a design fault even
when only the type checker follows it.  (No cycles: `test_import_cycles.py`.)
"""

from __future__ import annotations

from .test_import_cycles import import_graph

LOWER = ("chatgate.xml", "chatgate.sasl", "chatgate.auth", "chatgate.config", "chatgate.vocabulary")


def _imports_of(prefixes: tuple[str, ...]) -> dict[str, set[str]]:
    graph = import_graph(typing_imports=True)
    return {name: targets for name, targets in graph.items() if name.startswith(prefixes)}


def test_the_vocabulary_imports_nothing_of_ours() -> None:
    for name, targets in _imports_of(("chatgate.vocabulary",)).items():
        assert all(t.startswith("chatgate.vocabulary") for t in targets), (name, targets)


def test_lower_layers_never_import_the_session_layer() -> None:
    for name, targets in _imports_of(LOWER).items():
        upward = sorted(t for t in targets if t.startswith("chatgate.xmpp"))
        assert not upward, f"{name} imports {upward}"


def test_transports_do_not_import_sasl() -> None:
    for name, targets in _imports_of(("chatgate.xmpp.transports",)).items():
        assert not [t for t in targets if t.startswith("chatgate.sasl")], name
