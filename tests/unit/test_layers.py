"""The package's layers, checked from the source (issue 10 item 11): the vocabulary
imports nothing of ours, the parser, SASL, the credential providers and the
configuration never import the session layer, and no two modules import each other
through any chain, annotations (TYPE_CHECKING) and function-level imports included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import chatgate

ROOT = Path(chatgate.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """chatgate module -> chatgate modules it imports, anywhere in its source."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py") if "migrations" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")
                    up = up[: len(up) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                if target in modules and target != name:
                    found.add(target)
        graph[name] = found
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


# A package's __init__ that re-exports its submodules is not a cycle of design.
def _without_package_reexports(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {
        name: {t for t in targets if not (t.startswith(name + ".") and ROOT.joinpath(*name.split(".")[1:], "__init__.py").exists())}
        for name, targets in graph.items()
    }


def test_the_vocabulary_imports_nothing_of_ours() -> None:
    graph = _imports()
    for name, targets in graph.items():
        if name.startswith("chatgate.vocabulary"):
            assert not {t for t in targets if not t.startswith("chatgate.vocabulary")}, name


def test_lower_layers_never_import_the_session_layer() -> None:
    lower = ("chatgate.xml", "chatgate.sasl", "chatgate.auth", "chatgate.config", "chatgate.vocabulary")
    for name, targets in _imports().items():
        if name.startswith(lower):
            upward = sorted(t for t in targets if t.startswith("chatgate.xmpp"))
            assert not upward, f"{name} imports {upward}"


def test_transports_do_not_import_sasl() -> None:
    for name, targets in _imports().items():
        if name.startswith("chatgate.xmpp.transports"):
            assert not [t for t in targets if t.startswith("chatgate.sasl")], name


def test_no_import_cycle() -> None:
    assert _cycles(_without_package_reexports(_imports())) == []
