"""tools/import_graph.py: the import graph of transformer_lens has no cycle (runtime,
type-only and lazy imports alike), no import reaches up a floor of docs/architecture.md,
and the cycle and floor finders find what a graph holds."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_tool():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools/import_graph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["import_graph"] = module
    spec.loader.exec_module(module)
    return module


def test_the_cycle_finder_finds_each_cycle_once():
    tool = load_tool()
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": set()}
    assert sorted(tool.cycles(graph)) == [["a", "b", "c"], ["d", "e"]]
    assert tool.cycles({"a": {"b"}, "b": set()}) == []


def test_runtime_imports_of_the_package_have_no_cycle():
    tool = load_tool()
    graph = tool.build_graph(ROOT, set())
    assert "transformer_lens.pretrained.streaming.pieces" in graph
    assert "transformer_lens.hook_points" in graph["transformer_lens.HookedTransformer"]
    assert tool.cycles(graph) == []


def test_type_only_imports_close_no_cycle():
    tool = load_tool()
    assert tool.cycles(tool.build_graph(ROOT, {"typing"})) == []


def test_lazy_imports_close_no_cycle():
    tool = load_tool()
    assert tool.cycles(tool.build_graph(ROOT, {"typing", "lazy"})) == []


def test_no_import_reaches_up_a_floor():
    """Every module is on a floor of docs/architecture.md's table, and every import (lazy
    and type-only included) stays on its floor or goes below."""
    tool = load_tool()
    table = tool.floor_table((ROOT / tool.ARCHITECTURE).read_text())
    graph = tool.build_graph(ROOT, {"typing", "lazy"})
    assert tool.floor_of("transformer_lens.components.attention", table) == 3
    assert tool.floor_of("transformer_lens.pretrained.streaming.pieces", table) == 6
    assert tool.floor_of("transformer_lens.pretrained.loader", table) == 7
    assert tool.floor_of("transformer_lens", table) == 8
    assert tool.floor_violations(graph, table) == ([], [])


def test_the_floor_check_finds_arrows_up_and_modules_on_no_floor():
    tool = load_tool()
    table = tool.floor_table(
        "| floor | modules | owns |\n|---|---|---|\n"
        "| 1. low | `utils` `_utils_*` `pkg/low.py` | x |\n| 2. high | `pkg/` | y |\n"
    )
    assert table == {"utils": 1, "_utils_*": 1, "pkg/low.py": 1, "pkg/": 2}
    tl = "transformer_lens"
    graph = {
        f"{tl}.utils": {f"{tl}.pkg.mod", f"{tl}.pkg.low"},
        f"{tl}._utils_data": set(),
        f"{tl}.pkg.mod": {f"{tl}.utils"},
        f"{tl}.pkg.low": set(),
        f"{tl}.other": set(),
    }
    unplaced, upward = tool.floor_violations(graph, table)
    assert unplaced == [f"{tl}.other"]
    assert upward == [f"{tl}.utils (1) -> {tl}.pkg.mod (2)"]


def test_streaming_knows_nothing_of_the_model_classes():
    """pretrained/streaming fills a LoadTarget: even for types it imports neither
    HookedTransformer nor anything above it."""
    tool = load_tool()
    graph = tool.build_graph(ROOT, {"typing", "lazy"})
    above = {
        "transformer_lens.HookedTransformer",
        "transformer_lens.ActivationCache",
        "transformer_lens.pretrained.loader",
        "transformer_lens.pretrained.processing",
    }
    streaming = [m for m in graph if m.startswith("transformer_lens.pretrained.streaming")]
    assert len(streaming) >= 9
    for module in streaming:
        assert not graph[module] & above, (module, graph[module] & above)
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.streaming.target import LoadTarget

    cfg = HookedTransformerConfig(
        n_layers=1, d_model=8, n_ctx=4, d_head=2, d_vocab=5, act_fn="relu"
    )
    assert isinstance(HookedTransformer(cfg), LoadTarget)
