"""Opt-in demonstration: a Gemma-7b-shaped checkpoint on a 24 GiB machine.

Writes a random-weight bfloat16 checkpoint with the official Gemma-7b configuration (about
17 GB of safetensors, streamed to disk tensor by tensor: no model is ever built in
memory), then, each in a fresh process:
  1. Hugging Face: `AutoModelForCausalLM.from_pretrained(path, dtype=bfloat16)` and the
     logits of a short prompt (the reference);
  2. ours: `HookedTransformer.from_pretrained(path, dtype=torch.bfloat16)` (processed:
     fold_ln, centring), then `run_with_cache` on the same prompt;
  3. the same without processing (`from_pretrained_no_processing`), whose log-probs
     should equal HF's bit for bit.
Each child reports its peak resident memory and times; ours also reports how far its
log-probabilities are from HF's. Classic TransformerLens peaks at 2-3x the model's size
while loading (about 34-51 GB here) and cannot run this at all.

Never part of CI. Needs about 18 GB of free disk and 10-20 minutes on 2 CPU cores.
Run: python benchmarks/gemma_7b_demo.py [--dir /tmp/gemma-7b-random] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import time

MODEL = "google/gemma-7b"
PROMPT = [2, 651, 6037, 576, 6081, 603, 7127, 235269]  # token ids: no tokenizer offline
# HF's reference logits go through a file between the two child processes.
REFERENCE_FILE = "hf_logits.pt"

HF_CHILD = r"""
import json, resource, sys, time, torch, transformers
path, prompt = sys.argv[1], json.loads(sys.argv[2])
start = time.perf_counter()
model = transformers.AutoModelForCausalLM.from_pretrained(
    path, dtype=torch.bfloat16, attn_implementation="eager")
loaded = time.perf_counter()
with torch.no_grad():
    logits = model(torch.tensor([prompt])).logits.float()
ran = time.perf_counter()
torch.save(logits, path + "/hf_logits.pt")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"load_s": loaded - start, "forward_s": ran - loaded, "peak_bytes": peak}))
"""

OURS_CHILD = r"""
import json, resource, sys, time, warnings, torch
from transformer_lens import HookedTransformer
warnings.simplefilter("ignore")
path, prompt, processed = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3] == "processed"
load = HookedTransformer.from_pretrained if processed else HookedTransformer.from_pretrained_no_processing
start = time.perf_counter()
model = load(path, dtype=torch.bfloat16)
loaded = time.perf_counter()
load_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
with torch.no_grad():
    logits, cache = model.run_with_cache(torch.tensor([prompt]))
ran = time.perf_counter()
reference = torch.load(path + "/hf_logits.pt")
diff = (logits.float().log_softmax(-1) - reference.log_softmax(-1)).abs().max().item()
model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps({
    "load_s": loaded - start, "run_with_cache_s": ran - loaded, "load_peak_bytes": load_peak,
    "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "model_bytes": model_bytes, "cached_activations": len(cache),
    "max_logprob_diff_vs_hf": diff,
}))
"""


def write_checkpoint(directory: str) -> int:
    """Stream a random bfloat16 checkpoint to `directory`; returns its size in bytes."""
    import torch
    import transformers

    from transformer_lens.pretrained.official_models import official_hf_config

    config = official_hf_config(MODEL)
    config.dtype = "bfloat16"
    os.makedirs(directory, exist_ok=True)
    config.save_pretrained(directory)
    with torch.device("meta"):  # names and shapes only
        skeleton = getattr(transformers, config.architectures[0])(config)
    tensors = {
        name: tuple(parameter.shape)
        for name, parameter in skeleton.state_dict().items()
        if name != "lm_head.weight"  # tied to the embedding: saved once, as HF does
    }
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in tensors.items():
        size = 2 * _numel(shape)
        header[name] = {
            "dtype": "BF16",
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned
    path = os.path.join(directory, "model.safetensors")
    generator = torch.Generator().manual_seed(0)
    with open(path, "wb") as file:
        file.write(struct.pack("<Q", len(raw)) + raw)
        for shape in tensors.values():
            rows = shape[0]
            row_items = _numel(shape[1:])
            step = max(1, (64 * 2**20) // max(1, row_items))
            for start in range(0, rows, step):
                count = min(step, rows - start) * row_items
                # Norm weights (1-D) get a spread around 0, as Gemma stores w for 1 + w.
                scale = 0.3 if len(shape) == 1 else 0.02
                block = (torch.randn(count, generator=generator) * scale).to(torch.bfloat16)
                file.write(block.view(torch.uint8).numpy().tobytes())
    return os.path.getsize(path)


def _numel(shape: tuple[int, ...]) -> int:
    total = 1
    for size in shape:
        total *= size
    return total


def run_child(code: str, directory: str, *extra: str) -> dict[str, float]:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run(
        [sys.executable, "-c", code, directory, json.dumps(PROMPT), *extra],
        capture_output=True,
        text=True,
        env=env,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default="/tmp/gemma-7b-random")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoint afterwards")
    args = parser.parse_args()
    gib = 2**30
    try:
        start = time.perf_counter()
        size = write_checkpoint(args.dir)
        print(f"{MODEL} shape, random bfloat16: {size / 1e9:.1f} GB written in "
              f"{time.perf_counter() - start:.0f}s to {args.dir}")  # fmt: skip
        hf = run_child(HF_CHILD, args.dir)
        print(f"HF from_pretrained: load {hf['load_s']:.1f}s, forward {hf['forward_s']:.1f}s, "
              f"peak {hf['peak_bytes'] / gib:.1f} GiB")  # fmt: skip
        for kind in ("processed", "unprocessed"):
            ours = run_child(OURS_CHILD, args.dir, kind)
            print(
                f"HookedTransformer ({kind}): load {ours['load_s']:.1f}s, peak while loading "
                f"{ours['load_peak_bytes'] / gib:.1f} GiB "
                f"({ours['load_peak_bytes'] / ours['model_bytes']:.2f}x the model's "
                f"{ours['model_bytes'] / gib:.1f} GiB); run_with_cache ({len(PROMPT)} tokens, "
                f"{ours['cached_activations']} activations) {ours['run_with_cache_s']:.1f}s, "
                f"peak {ours['peak_bytes'] / gib:.1f} GiB; max |log-prob diff| vs HF "
                f"{ours['max_logprob_diff_vs_hf']:.4f}"
            )
    finally:
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
