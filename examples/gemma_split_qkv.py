"""Gemma-2b with split Q/K/V input: the case that crashed classic TransformerLens.

Loads a Gemma-2b-architecture model (the real weights when they are in the local Hugging
Face cache, otherwise random weights with the official Gemma-2b configuration), then:
  1. compares HookedTransformer logits with Hugging Face (eager attention) on the same weights;
  2. runs with use_split_qkv_input off and on, and with the per-head inputs materialised;
  3. patches the key input of one key/value head with another prompt's residual and prints
     how much each query head's output (hook_z) moved: the query heads of that group move,
     the others stay exactly where they were.

Run: python examples/gemma_split_qkv.py [--n-layers 2] [--dtype float32] [--seq 16]
"""

from __future__ import annotations

import argparse
import os
import warnings

import torch

from transformer_lens import HookedTransformer
from transformer_lens.pretrained.official_models import official_hf_config

MODEL = "google/gemma-2b"


def load_reference(n_layers: int, dtype: torch.dtype) -> tuple[torch.nn.Module, str]:
    """The HF model: cached real weights if available, else random with the official config."""
    from transformers import AutoModelForCausalLM, GemmaForCausalLM

    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(MODEL, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="eager")
        return model.eval(), f"real weights from {path}"
    except Exception:
        pass
    config = official_hf_config(MODEL)
    config.num_hidden_layers = n_layers
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # initialise directly in the target dtype
    try:
        model = GemmaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    with torch.no_grad():  # random norm weights, so that Gemma's 1 + w convention matters
        for name, param in model.named_parameters():
            if "norm" in name:
                param.normal_(0.0, 0.5)
    return model.eval(), f"random weights, official Gemma-2b configuration, {n_layers} layers"


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-layers", type=int, default=2, help="layers when weights are random")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--seq", type=int, default=16)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    dtype = getattr(torch, args.dtype)

    hf_model, origin = load_reference(args.n_layers, dtype)
    print(f"Model: {MODEL} ({origin}), dtype {args.dtype}")
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # "differs from official" (fewer layers), no tokenizer offline
        model = HookedTransformer.from_pretrained_no_processing(
            MODEL, hf_model=hf_model, dtype=dtype
        )
    cfg = model.cfg
    print(
        f"  {cfg.n_layers} layers, d_model {cfg.d_model}, {cfg.n_heads} query heads, "
        f"{cfg.n_key_value_heads} key/value head(s), d_head {cfg.d_head}"
    )

    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, cfg.d_vocab, (1, args.seq), generator=generator)
    other = torch.randint(0, cfg.d_vocab, (1, args.seq), generator=generator)

    with torch.no_grad():
        reference = hf_model(prompt).logits
        plain = model(prompt)
        model.set_use_split_qkv_input(True)
        split = model(prompt)
        materialised = model.run_with_hooks(
            prompt,
            fwd_hooks=[
                (
                    lambda n: n.endswith(("_q_input", "_k_input", "_v_input")),
                    lambda x, hook: x.clone(),
                )
            ],
        )
    print("\nParity (max |logit difference|):")
    print(f"  HookedTransformer vs Hugging Face eager : {max_diff(plain, reference):.3e}")
    print(f"  split input on vs off                   : {max_diff(split, plain):.3e}")
    print(f"  split input, per-head inputs edited     : {max_diff(materialised, plain):.3e}")

    layer = cfg.n_layers - 1
    kv_head = 0
    with torch.no_grad():
        _, other_cache = model.run_with_cache(other, names_filter=f"blocks.{layer}.hook_resid_pre")
        _, clean_cache = model.run_with_cache(prompt, names_filter=f"blocks.{layer}.attn.hook_z")

        def patch_key_input(key_input: torch.Tensor, hook: object) -> None:
            key_input[:, :, kv_head] = other_cache[f"blocks.{layer}.hook_resid_pre"]

        with model.hooks(fwd_hooks=[(f"blocks.{layer}.hook_k_input", patch_key_input)]):
            patched_logits, patched_cache = model.run_with_cache(
                prompt, names_filter=f"blocks.{layer}.attn.hook_z"
            )
    group = cfg.n_heads // (cfg.n_key_value_heads or cfg.n_heads)
    print(
        f"\nPatched the key input of key/value head {kv_head} in layer {layer} with another "
        f"prompt's residual (query heads {kv_head * group}..{kv_head * group + group - 1} read it)."
    )
    print("  query head : mean |change in hook_z|")
    clean_z = clean_cache[f"blocks.{layer}.attn.hook_z"]
    patched_z = patched_cache[f"blocks.{layer}.attn.hook_z"]
    for head in range(cfg.n_heads):
        change = float((patched_z[:, :, head] - clean_z[:, :, head]).abs().mean())
        print(f"  {head:10d} : {change:.3e}")
    print(f"  logits moved by at most {max_diff(patched_logits, plain):.3e}")
    model.set_use_split_qkv_input(False)


if __name__ == "__main__":
    main()
