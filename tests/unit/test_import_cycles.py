"""No import cycle among chatgate's modules (issue 10 item 11).

A cycle makes the import order matter and the layers meaningless: the auth
registry imported its providers (lazily, in their factories) while every
provider imported the registry for its errors.  The graph is built with `ast`
from the source, so nothing is imported: module-level imports and imports
inside functions count (a lazy import still closes a cycle as soon as it
runs); imports under ``if TYPE_CHECKING:`` are checked apart
(`test_no_cycle_with_typing_imports`).
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path

import chatgate

ROOT = Path(chatgate.__file__).resolve().parent
PACKAGE = "chatgate"


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_graph(*, typing_imports: bool = False) -> dict[str, set[str]]:
    """module -> the chatgate modules it imports (each name resolved to the longest
    module prefix: ``from chatgate.xml.parser import Stanza`` is chatgate.xml.parser)."""
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name:
            if name in modules:
                return name
            name = name.rpartition(".")[0]
        return None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        found: set[str] = set()
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in _walk(ast.parse(path.read_text(encoding="utf-8")).body, typing_imports):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    parent = package.split(".")
                    parent = parent[: len(parent) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for name in names:
                if name == PACKAGE or name.startswith(PACKAGE + "."):
                    target = resolve(name)
                    if target is not None and target != module:
                        found.add(target)
        graph[module] = found
    return graph


def _walk(body: Sequence[ast.AST], typing_imports: bool) -> list[ast.Import | ast.ImportFrom]:
    out: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            out.append(node)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            if typing_imports:
                out += _walk(node.body, typing_imports)
            out += _walk(node.orelse, typing_imports)
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    out += _walk(children, typing_imports)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_the_graph_sees_lazy_and_relative_imports() -> None:
    graph = import_graph()
    assert "chatgate.auth.internal" in graph["chatgate.auth.registry"]  # inside a function
    assert "chatgate.xml.element" in graph["chatgate.xml.parser"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_no_cycle_with_typing_imports() -> None:
    """Not even for type checking: a cycle there is a design one (the module context
    and the connections it reaches into), whatever the import order does."""
    assert cycles(import_graph(typing_imports=True)) == []


def test_providers_do_not_import_their_registry() -> None:
    """The providers' errors live in auth/provider.py; the registry re-exports them."""
    from chatgate.auth import provider, registry

    graph = import_graph(typing_imports=True)
    for name in ("internal", "http", "extauth", "ldap", "anonymous", "provider"):
        assert "chatgate.auth.registry" not in graph[f"chatgate.auth.{name}"], name
    assert registry.ProviderUnavailable is provider.ProviderUnavailable
    assert registry.UnsupportedQuestion is provider.UnsupportedQuestion
    assert issubclass(provider.ProviderUnavailable, provider.ProviderError)
