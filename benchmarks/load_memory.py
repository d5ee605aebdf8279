"""Peak memory and time of loading a local safetensors checkpoint, against Hugging Face.

Writes a random-weight checkpoint of an official configuration (Gemma-2b width by default,
fewer layers so that it fits beside everything else), then loads it in fresh processes:
  * HookedTransformer.from_pretrained(path)               (processed: fold_ln etc.)
  * HookedTransformer.from_pretrained_no_processing(path)
  * transformers AutoModelForCausalLM.from_pretrained(path), which maps the file lazily,
    and the same followed by one read of every weight ("hf_read")
Each child reports its peak resident memory above what `import torch, transformers,
transformer_lens` already costs, divided by the bytes of the model it built.

Then, for the processed load, where its time goes: per piece (config, embedding, layers,
unembedding) and torch.profiler's top operators.

Run: python benchmarks/load_memory.py [--model google/gemma-2b] [--layers 4] [--dtype float32]
     [--load-dtype float32] [--warm-memory GIB]
`--dtype` is the checkpoint's dtype, `--load-dtype` the one every loader asks for (the same
by default). `--dtype bfloat16 --load-dtype float32` is the common case of a bfloat16
checkpoint (as many are published) loaded into HookedTransformer's default float32, where
HF's load converts, and so writes, every weight too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, resource, sys, time, warnings
import torch, transformers, transformer_lens
from transformer_lens import HookedTransformer
warnings.simplefilter("ignore")
kind, path, dtype = sys.argv[1], sys.argv[2], getattr(torch, sys.argv[3])
base = int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) * 1024
start = time.perf_counter()
if kind.startswith("hf"):
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    if kind == "hf_read":  # HF maps the file lazily; reading every weight once is fairer
        for parameter in model.parameters():
            parameter.data.sum()
elif kind == "ours":
    model = HookedTransformer.from_pretrained(path, dtype=dtype)
else:
    model = HookedTransformer.from_pretrained_no_processing(path, dtype=dtype)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
storages = {p.untyped_storage().data_ptr(): p.untyped_storage().nbytes() for p in model.parameters()}
storages.update({b.untyped_storage().data_ptr(): b.untyped_storage().nbytes() for b in model.buffers()})
print(json.dumps({"seconds": seconds, "extra_bytes": peak - base, "model_bytes": sum(storages.values())}))
"""


# The processed load, timed by piece, then once more under torch.profiler for its top ops.
PHASES = r"""
import json, sys, time, warnings
import torch, transformers, transformer_lens
from torch.profiler import profile
from transformer_lens import HookedTransformer
from transformer_lens.pretrained import loader
from transformer_lens.pretrained.streaming import pieces
warnings.simplefilter("ignore")
path, dtype = sys.argv[1], getattr(torch, sys.argv[2])
phases = {}
def timed(label, fn):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            phases[label] = phases.get(label, 0.0) + time.perf_counter() - start
    return wrapper
load_piece = pieces._StreamingLoader.load_piece
def labelled(self, piece, layers, unembed):
    label = "unembedding" if unembed else ("layers" if layers else "embedding")
    return timed(label, load_piece)(self, piece, layers, unembed)
loader._resolve = timed("config", loader._resolve)
pieces._StreamingLoader.load_piece = labelled
start = time.perf_counter()
model = HookedTransformer.from_pretrained(path, dtype=dtype)
phases["total"] = time.perf_counter() - start  # before freeing the model, which takes time too
del model
pieces._StreamingLoader.load_piece = load_piece
# One torch thread: the vocabulary blocks then load inline (block_threads), on the thread
# the profiler watches (it does not follow ops onto threads started while it runs).
torch.set_num_threads(1)
with profile() as prof:
    HookedTransformer.from_pretrained(path, dtype=dtype)
ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
top = [(e.key, e.count, e.self_cpu_time_total / 1e6) for e in ops]
print(json.dumps({"phases": phases, "top_ops": top}))
"""


def write_checkpoint(model_name: str, layers: int, dtype: str, path: str) -> None:
    import torch
    import transformers

    from transformer_lens.pretrained.official_models import official_hf_config

    config = official_hf_config(model_name)
    config.num_hidden_layers = layers
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        model = getattr(transformers, config.architectures[0])(config)
    finally:
        torch.set_default_dtype(previous)
    model.save_pretrained(path)


def run_child(code: str, *args: str) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def warm_memory(gib: float) -> None:
    """Touch `gib` GiB in a throwaway process. On a VM that hands free memory back to the
    host (virtio-balloon free page reporting, as this development machine does), the
    first touch of such a page costs a host fault too, 2-3x a plain one, for a
    few seconds after memory is freed; freed right before the next child, these pages
    are the ones it reuses. HF's lazy load allocates nothing and is unaffected."""
    if gib > 0:
        code = "import torch, sys; torch.empty(int(float(sys.argv[1]) * 2**28)).fill_(0)"
        subprocess.run([sys.executable, "-c", code, str(gib)], check=True)


def measure(kind: str, path: str, dtype: str, warm_gib: float) -> dict[str, float]:
    warm_memory(warm_gib)
    return run_child(CHILD, kind, path, dtype)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="google/gemma-2b")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument(
        "--load-dtype",
        choices=["float32", "bfloat16"],
        help="the dtype the loaders ask for (default: --dtype)",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--warm-memory",
        type=float,
        default=0.0,
        metavar="GIB",
        help="touch this many GiB in a throwaway process before each load (see warm_memory)",
    )
    parser.add_argument("--write", help=argparse.SUPPRESS)
    args = parser.parse_args()
    load_dtype = args.load_dtype or args.dtype
    if args.write:
        write_checkpoint(args.model, args.layers, args.dtype, args.write)
        return
    with tempfile.TemporaryDirectory() as path:
        started = time.perf_counter()
        # In a child process: a parent that held the model would pass its peak on to every
        # child it forks (ru_maxrss survives exec), spoiling their measurements.
        subprocess.run(
            [sys.executable, __file__, "--write", path, "--model", args.model,
             "--layers", str(args.layers), "--dtype", args.dtype],
            check=True, capture_output=True,
        )  # fmt: skip
        print(
            f"{args.model} shape, {args.layers} layers, {args.dtype}: checkpoint written in "
            f"{time.perf_counter() - started:.0f}s; loaded as {load_dtype}"
        )
        results: dict[str, list[dict[str, float]]] = {
            "hf": [],
            "hf_read": [],
            "ours": [],
            "ours_no_processing": [],
        }
        for _ in range(args.rounds):  # interleaved, so that page-cache warmth is shared
            for kind in results:
                results[kind].append(measure(kind, path, load_dtype, args.warm_memory))
        warm_memory(args.warm_memory)
        breakdown = run_child(PHASES, path, load_dtype)
    best = {kind: min(runs, key=lambda r: r["seconds"]) for kind, runs in results.items()}
    hf_seconds = best["hf"]["seconds"]
    print(f"{'loader':<22}{'peak extra / model bytes':>26}{'seconds':>10}{'vs HF time':>12}")
    for kind, result in best.items():
        ratio = max(r["extra_bytes"] for r in results[kind]) / result["model_bytes"]
        print(
            f"{kind:<22}{ratio:>26.2f}{result['seconds']:>10.2f}{result['seconds'] / hf_seconds:>12.2f}"
        )
    print("Targets: peak extra / model bytes <= 1.3; load time <= 1.5x Hugging Face's.")
    print("\nWhere the processed load's time goes (one more load, seconds):")
    print("  " + ", ".join(f"{k} {v:.2f}" for k, v in breakdown["phases"].items()))
    print("  (config: reading config.json imports transformers.models, as HF's load does)")
    print("Top operators of a profiled processed load (self CPU seconds, on one thread):")
    for name, count, seconds in breakdown["top_ops"]:
        print(f"  {name:<28}{count:>8} calls{seconds:>8.2f}")


if __name__ == "__main__":
    main()
