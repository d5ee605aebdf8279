"""tools/import_graph.py: the runtime import graph of transformer_lens has no cycle, and the
cycle finder finds the cycles of a graph it is given."""

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
