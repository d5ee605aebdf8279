"""The import graph of transformer_lens: which module imports which, and its cycles.

    python tools/import_graph.py            # cycles among runtime module-level imports
    python tools/import_graph.py --typing   # imports under `if TYPE_CHECKING:` count too
    python tools/import_graph.py --lazy     # every import, inside functions and type-only too
    python tools/import_graph.py --edges    # every edge, one per line

Exits 1 when there is a cycle. Runtime module-level imports make the graph; type-only
imports (`if TYPE_CHECKING:`) and lazy ones (inside a function, the usual way a cycle is
broken today) join it on request. `from X import a` is an arrow to the module X.a when
there is one; the parent packages a module's import loads first are not arrows."""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = "transformer_lens"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(
    tree: ast.Module, name: str, is_package: bool, kinds: set[str], modules: set[str]
) -> set[str]:
    """The transformer_lens modules a module imports (absolute names): `from X import a`
    is an edge to the module X.a when there is one, else to X."""
    found: set[str] = set()
    nodes = ast.walk(tree) if "lazy" in kinds else _top_level(tree, "typing" in kinds)
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(PACKAGE))
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, name, is_package)
            if base is None or not base.startswith(PACKAGE):
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in modules else base)
    # Importing a module imports its parent packages first: not an arrow of its own.
    return {m for m in found if not name.startswith(m + ".")}


def _top_level(tree: ast.Module, typing: bool) -> list[ast.stmt]:
    """Module-level statements, including the bodies of `if`/`try` blocks at that level
    (`if TYPE_CHECKING:` only when `typing`)."""
    result: list[ast.stmt] = []
    pending = list(tree.body)
    while pending:
        node = pending.pop(0)
        result.append(node)
        if isinstance(node, ast.If) and not typing and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.If | ast.Try):
            pending.extend(node.body + node.orelse)
            if isinstance(node, ast.Try):
                pending.extend(stmt for handler in node.handlers for stmt in handler.body)
    return result


def _absolute(node: ast.ImportFrom, name: str, is_package: bool) -> str | None:
    if node.level == 0:
        return node.module
    parts = name.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def build_graph(root: Path, kinds: set[str]) -> dict[str, set[str]]:
    files = sorted((root / PACKAGE).rglob("*.py"))
    names = {module_name(f, root): f for f in files}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        tree = ast.parse(path.read_text(), str(path))
        imports = imported_modules(tree, name, path.name == "__init__.py", kinds, set(names))
        graph[name] = {m for m in imports if m in names and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--typing", action="store_true", help="count TYPE_CHECKING imports")
    parser.add_argument("--lazy", action="store_true", help="count every import")
    parser.add_argument("--edges", action="store_true", help="print every edge")
    args = parser.parse_args()
    kinds = {kind for kind in ("typing", "lazy") if getattr(args, kind)}
    graph = build_graph(Path(__file__).resolve().parents[1], kinds)
    if args.edges:
        for module in sorted(graph):
            for imported in sorted(graph[module]):
                print(f"{module} -> {imported}")
        return 0
    found = cycles(graph)
    kind = " and ".join(["runtime module-level", *sorted(kinds)])
    for component in found:
        print(f"cycle ({len(component)} modules): " + ", ".join(component))
    print(
        f"{len(graph)} modules, {sum(map(len, graph.values()))} {kind} imports, "
        f"{len(found)} cycle(s)"
    )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
