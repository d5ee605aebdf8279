"""The issue's anchors, re-measured: classic TransformerLens 2.x against HF on the same harness.

Run it in a separate environment where the classic package (not this fork) is installed,
for example:

    python -m venv /tmp/classic && /tmp/classic/bin/pip install torch==2.13.0 \
        transformers==5.24.0 einops fancy-einsum better-abc typeguard jaxtyping \
        "beartype<0.15" rich tqdm sentencepiece pandas datasets
    /tmp/classic/bin/pip install --no-deps transformer-lens==2.18.0
    /tmp/classic/bin/python benchmarks/classic_anchor.py --rounds 7 --save classic.json
    python benchmarks/speed.py --rounds 7 --classic classic.json   # this fork, same anchors

It builds the same HF models as `speed.py` (same configs, same seed), converts them with the
classic package's own weight conversion (no processing), and prints the same ratios to HF
eager. The hub is never contacted: the classic config lookup is handed the HF config.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent


def load_speed_module() -> Any:
    """speed.py by path (it is a script, not a package), for its cases and timing helpers."""
    spec = importlib.util.spec_from_file_location("speed", HERE / "speed.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["speed"] = module
    spec.loader.exec_module(module)
    return module


def build_classic(speed: Any, case: Any) -> tuple[Any, Any]:
    import transformers

    from transformer_lens import HookedTransformer
    from transformer_lens import loading_from_pretrained as loading

    config = getattr(transformers, case.family)(**case.config)
    model_class = getattr(transformers, case.family.replace("Config", "ForCausalLM"))
    torch.manual_seed(0)
    hf = model_class(config).eval()
    hf.config._attn_implementation = "eager"
    name = speed.OFFICIAL[case.family]
    # The classic config lookup asks the hub for the HF config; hand it ours instead.
    loading.AutoConfig.from_pretrained = lambda *args, **kwargs: config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = loading.get_pretrained_model_config(
            name, first_n_layers=config.num_hidden_layers, dtype=torch.float32, device="cpu"
        )
        cfg = matching_hf(cfg, config)
        classic = HookedTransformer(cfg)
        state_dict = loading.get_pretrained_state_dict(name, cfg, hf_model=hf)
        classic.load_and_process_state_dict(
            state_dict,
            fold_ln=False,
            center_writing_weights=False,
            center_unembed=False,
            fold_value_biases=False,
            refactor_factored_attn_matrices=False,
        )
    tokens = torch.randint(0, 1000, (1, 8))
    with torch.inference_mode():
        difference = (classic(tokens) - hf(tokens).logits).abs().max().item()
    print(f"  classic vs HF logits max |diff| {difference:.2e} (same weights check)")
    if difference > 1e-3:  # a config field the conversion got wrong: timings would mislead
        raise SystemExit(f"classic model differs from HF on {case.name}; not timing it")
    return hf, classic.eval()


def matching_hf(cfg: Any, config: Any) -> Any:
    """The classic config with the sizes of the benchmark's HF config: the classic package
    hard-codes some official configs (Llama-3.2-1B's vocabulary, MLP width, rotary scaling)
    instead of reading the HF config, and the benchmark's Llama-like config differs."""
    fields = cfg.to_dict()
    fields.update(
        d_vocab=config.vocab_size,
        d_vocab_out=config.vocab_size,
        d_mlp=config.intermediate_size,
        n_ctx=config.max_position_embeddings,
        eps=config.rms_norm_eps,
        tokenizer_name=None,  # no hub tokenizer offline; the benchmark feeds token ids
    )
    rope = getattr(config, "rope_parameters", None) or {}
    if "rope_theta" in rope:
        fields.update(rotary_base=rope["rope_theta"])
    if rope.get("rope_type", "default") == "default":
        fields.update(use_NTK_by_parts_rope=False)
    return type(cfg).from_dict(fields)


def rows(speed: Any, case: Any, hf: Any, classic: Any, rounds: int) -> list[tuple[str, float]]:
    tokens = torch.randint(0, 1000, (case.batch, case.seq))

    def split_forward() -> Any:
        classic.cfg.use_split_qkv_input = True
        try:
            return classic(tokens)
        finally:
            classic.cfg.use_split_qkv_input = False

    fns = {
        "hf_eager": lambda: hf(tokens).logits,
        "forward": lambda: classic(tokens),
        "run_with_cache": lambda: classic.run_with_cache(tokens),
        "split": split_forward,
    }
    with torch.inference_mode():
        seconds = speed.interleaved(fns, rounds, "cpu")
        plain_peak = speed.peak_transient_bytes(lambda: classic(tokens))
        split_peak = speed.peak_transient_bytes(split_forward)
    base = seconds["hf_eager"]
    return [
        ("classic forward / HF eager", seconds["forward"] / base),
        ("classic run_with_cache / HF eager", seconds["run_with_cache"] / base),
        ("classic split input / its forward", seconds["split"] / seconds["forward"]),
        ("classic split transient memory / plain", split_peak / max(plain_peak, 1)),
        ("HF eager forward seconds", base),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--case", type=int, action="append", help="index into speed.CASES")
    parser.add_argument("--save", help="write the ratios as JSON, for speed.py --classic")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from importlib.metadata import version as installed_version

    version = installed_version("transformer-lens")
    speed = load_speed_module()
    print(
        f"classic transformer_lens {version}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, rounds {args.rounds} (medians)"
    )
    indices = args.case if args.case else range(len(speed.CASES))
    saved: dict[str, dict[str, float]] = {}
    for index in indices:
        case = speed.CASES[index]
        print(f"\n{case.name}")
        hf, classic = build_classic(speed, case)
        measured = rows(speed, case, hf, classic, args.rounds)
        for label, value in measured:
            print(f"  {label:<40}{value:>8.3f}")
        # Keyed like speed.py's rows, so that it can use them as anchors.
        saved[case.name] = {label.replace("classic ", ""): value for label, value in measured}
        del hf, classic
    if args.save:
        with open(args.save, "w") as handle:
            json.dump(saved, handle, indent=1)


if __name__ == "__main__":
    main()
