"""The import graph of transformer_lens: which module imports which, and its cycles.

    python tools/import_graph.py            # cycles among runtime module-level imports
    python tools/import_graph.py --typing   # imports under `if TYPE_CHECKING:` count too
    python tools/import_graph.py --lazy     # every import, inside functions and type-only too
    python tools/import_graph.py --edges    # every edge, one per line
    python tools/import_graph.py --floors   # every import that reaches up a floor

Exits 1 when there is a cycle (with --floors: an arrow up a floor, or a module on no
floor). The floors are the table in docs/architecture.md: each backticked path there is a
module (`utils`, `pretrained/loader.py`), a glob (`_utils_*`) or a package with everything
in it (`components/`), relative to transformer_lens/; the most specific entry wins. Every
import counts for floors, lazy and type-only ones included. Runtime module-level imports make the graph; type-only
imports (`if TYPE_CHECKING:`) and lazy ones (inside a function, the usual way a cycle is
broken today) join it on request. `from X import a` is an arrow to the module X.a when
there is one; the parent packages a module's import loads first are not arrows."""

from __future__ import annotations

import argparse
import ast
import fnmatch
import re
import sys
from pathlib import Path

PACKAGE = "transformer_lens"
ARCHITECTURE = Path("docs/architecture.md")


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


def floor_table(text: str) -> dict[str, int]:
    """Path pattern -> floor, from the rows `| N. name | `path` `path` ... | owns |` of the
    floors table in docs/architecture.md."""
    table: dict[str, int] = {}
    for line in text.splitlines():
        row = re.match(r"\|\s*(\d+)\.[^|]*\|([^|]*)\|", line)
        if row:
            for path in re.findall(r"`([^`]+)`", row.group(2)):
                table[path] = int(row.group(1))
    return table


def floor_of(module: str, table: dict[str, int]) -> int | None:
    """The floor of the most specific table entry that names the module: an exact path
    first, then the longest glob or package."""
    relative = module.removeprefix(PACKAGE).lstrip(".").replace(".", "/")
    best: tuple[bool, int, int] | None = None
    for pattern, floor in table.items():
        path = pattern.removesuffix(".py").removesuffix("__init__").rstrip("/") or ""
        if pattern.endswith("/"):
            matches = relative == path or relative.startswith(path + "/")
        else:
            matches = fnmatch.fnmatchcase(relative, path)
        exact = matches and "*" not in path and not pattern.endswith("/")
        if matches and (best is None or (exact, len(path)) > best[:2]):
            best = (exact, len(path), floor)
    return None if best is None else best[2]


def floor_violations(
    graph: dict[str, set[str]], table: dict[str, int]
) -> tuple[list[str], list[str]]:
    """The modules on no floor, and every arrow `a -> b` with b on a higher floor than a."""
    floors = {module: floor_of(module, table) for module in graph}
    unplaced = sorted(module for module, floor in floors.items() if floor is None)
    upward = [
        f"{module} ({floors[module]}) -> {imported} ({floors[imported]})"
        for module in sorted(graph)
        for imported in sorted(graph[module])
        if (low := floors[module]) is not None
        and (high := floors[imported]) is not None
        and high > low
    ]
    return unplaced, upward


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--typing", action="store_true", help="count TYPE_CHECKING imports")
    parser.add_argument("--lazy", action="store_true", help="count every import")
    parser.add_argument("--edges", action="store_true", help="print every edge")
    parser.add_argument("--floors", action="store_true", help="print arrows up a floor")
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    if args.floors:
        graph = build_graph(root, {"typing", "lazy"})
        unplaced, upward = floor_violations(graph, floor_table((root / ARCHITECTURE).read_text()))
        for module in unplaced:
            print(f"on no floor of {ARCHITECTURE}: {module}")
        for arrow in upward:
            print(f"up a floor: {arrow}")
        print(f"{len(graph)} modules, {len(unplaced)} on no floor, {len(upward)} arrow(s) up")
        return 1 if unplaced or upward else 0
    kinds = {kind for kind in ("typing", "lazy") if getattr(args, kind)}
    graph = build_graph(root, kinds)
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
