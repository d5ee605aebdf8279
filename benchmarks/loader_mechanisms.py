"""What each performance mechanism of the streaming loader earns, on the load it targets.

Writes random-weight checkpoints of an official configuration (Gemma-2b width by default,
fewer layers), then for each mechanism times loads with it on and switched off (monkeypatched
in a fresh child process), alternating, and prints the median over rounds of each round's
time ratio off / on, and the peak-memory ratio:
a time ratio of 1.25 means that without the mechanism the load takes 25% longer. The
issue on the loading house asks each mechanism to pay at least 10% on its target load.

Run: python benchmarks/loader_mechanisms.py [--model google/gemma-2b] [--layers 4]
     [--rounds 3] [--warm-memory GIB] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load_memory import run_child, warm_memory  # noqa: E402

# Each switch turns one mechanism off; the loads it targets are (checkpoint dtype, load
# dtype, processed?).
CHILD = r"""
import dataclasses, json, resource, sys, time, warnings
import torch, transformers, transformer_lens
from transformer_lens import HookedTransformer, weight_processing
from transformer_lens.pretrained.streaming import (
    block_threads, float32_buffers, mlp_blocks, pieces, vocab_blocks,
)
warnings.simplefilter("ignore")
path, dtype, processed, off = sys.argv[1], getattr(torch, sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
Loader = pieces._StreamingLoader

def workspace_reading_everything(self, tensors, buffers):
    workspace = Loader._workspace_on(self, tensors, buffers)
    for tensor in tensors.values():  # convert every tensor, used or not
        workspace.read(tensor)
    return workspace

def plain_write(self, rows, value, offset):
    rows.copy_(value if offset is None else value - offset)

def load_for_processing_converted(self, weight):
    return weight.load(self.cfg, self.source.get)

original_adopt = pieces.adopt_or_copy
Loader._workspace_on = Loader._workspace
SWITCHES = {
    "map_in_place": lambda: setattr(Loader, "read_in_place", lambda self, weight: False),
    "adopt": lambda: setattr(pieces, "adopt_or_copy", lambda t, v, a=frozenset(): original_adopt(t, v)),
    "vocab_blocks": lambda: setattr(vocab_blocks, "chunk_axis", lambda weight: None),
    "block_threads": lambda: setattr(block_threads, "for_each_share", lambda work, items: work(items)),
    "staging": lambda: setattr(float32_buffers.Staging, "write", plain_write),
    "unembed_sum_in_embedding_pass": lambda: setattr(
        pieces, "_unembedding_sum_during_embedding", lambda *args: None),
    "embedding_scale_writes_out": lambda: setattr(
        Loader, "_write_block_directly", lambda self, *args: False),
    "float32_buffers_reused": lambda: setattr(
        float32_buffers.Float32Buffers, "empty_like",
        lambda self, tensor, dtype: torch.empty_like(tensor, dtype=dtype)),
    "float32_only_what_is_read": lambda: setattr(Loader, "_workspace", workspace_reading_everything),
    "mlp_column_blocks": lambda: setattr(mlp_blocks, "keys_folded_by_blocks", lambda *args: set()),
    "half_precision_views": lambda: setattr(Loader, "load_for_processing", load_for_processing_converted),
}
if off != "none":
    SWITCHES[off]()
base = int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) * 1024
start = time.perf_counter()
if processed:
    model = HookedTransformer.from_pretrained(path, dtype=dtype)
else:
    model = HookedTransformer.from_pretrained_no_processing(path, dtype=dtype)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "extra_bytes": peak - base}))
"""

# mechanism -> the loads it targets: (checkpoint dtype, load dtype, processed)
TARGETS: dict[str, list[tuple[str, str, bool]]] = {
    "map_in_place": [("float32", "float32", False), ("bfloat16", "bfloat16", True)],
    "adopt": [("float32", "float32", True)],
    "vocab_blocks": [("float32", "float32", True), ("bfloat16", "bfloat16", True)],
    "block_threads": [("float32", "float32", True), ("bfloat16", "bfloat16", True)],
    "staging": [("float32", "float32", True), ("bfloat16", "bfloat16", True)],
    "unembed_sum_in_embedding_pass": [("float32", "float32", True)],
    "embedding_scale_writes_out": [("float32", "float32", True)],
    "float32_buffers_reused": [("bfloat16", "bfloat16", True), ("bfloat16", "float32", True)],
    "float32_only_what_is_read": [("bfloat16", "bfloat16", True), ("bfloat16", "float32", True)],
    "mlp_column_blocks": [("bfloat16", "bfloat16", True)],
    "half_precision_views": [("bfloat16", "float32", True)],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="google/gemma-2b")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warm-memory", type=float, default=0.0, metavar="GIB")
    parser.add_argument("--only", nargs="*", choices=sorted(TARGETS), default=sorted(TARGETS))
    args = parser.parse_args()
    loads = sorted({load for name in args.only for load in TARGETS[name]})
    with tempfile.TemporaryDirectory() as root:
        paths = {}
        for checkpoint_dtype in sorted({load[0] for load in loads}):
            paths[checkpoint_dtype] = os.path.join(root, checkpoint_dtype)
            script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "load_memory.py")
            subprocess.run(
                [sys.executable, script, "--write", paths[checkpoint_dtype], "--model",
                 args.model, "--layers", str(args.layers), "--dtype", checkpoint_dtype],
                check=True, capture_output=True,
            )  # fmt: skip
        print(f"{args.model} shape, {args.layers} layers; best of {args.rounds} rounds")
        print(f"{'mechanism switched off':<32}{'load':<28}{'on s':>7}{'off s':>7}"
              f"{'time off/on':>12}{'peak off/on':>12}")  # fmt: skip
        for name in args.only:
            for checkpoint_dtype, load_dtype, processed in TARGETS[name]:
                runs: dict[str, list[dict[str, float]]] = {"none": [], name: []}
                for _ in range(args.rounds):  # alternating, so the machine's drift is shared
                    for off in runs:
                        warm_memory(args.warm_memory)
                        runs[off].append(
                            run_child(CHILD, paths[checkpoint_dtype], load_dtype,
                                      "1" if processed else "0", off)
                        )  # fmt: skip
                on = min(r["seconds"] for r in runs["none"])
                off_s = min(r["seconds"] for r in runs[name])
                # Each round's off / on pair shares the machine's state of the moment (this
                # VM's page-fault cost drifts by tens of percent): their median is the
                # figure to read; best-of times are shown for scale.
                paired = statistics.median(
                    b["seconds"] / a["seconds"]
                    for a, b in zip(runs["none"], runs[name], strict=True)
                )
                peak = max(r["extra_bytes"] for r in runs[name]) / max(
                    r["extra_bytes"] for r in runs["none"]
                )
                kind = "processed" if processed else "unprocessed"
                load = f"{checkpoint_dtype}->{load_dtype} {kind}"
                print(
                    f"{name:<32}{load:<28}{on:>7.2f}{off_s:>7.2f}{paired:>12.2f}{peak:>12.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
