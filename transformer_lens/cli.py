"""The `transformer-lens` command (also `python -m transformer_lens`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence

# Exit statuses of `verify`: every row within tolerance, a row over it, no verification.
EXIT_PASSED, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line (`argv` defaults to sys.argv[1:]) and return its exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command != "verify":
        parser.print_help()
        return EXIT_ERROR
    return _verify(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="transformer-lens",
        description="Classic HookedTransformer tools. `verify MODEL` compares a "
        "HookedTransformer with Hugging Face transformers on the same weights.",
    )
    commands = parser.add_subparsers(dest="command")
    verify = commands.add_parser(
        "verify",
        help="compare a HookedTransformer with Hugging Face on the same weights",
        description="Build the Hugging Face model and the HookedTransformer from the same "
        "weights (real ones when found locally or on a reachable hub, else random ones with "
        "the model's configuration), run a few prompts and print how far apart they are: "
        "logits, the residual stream per layer, every hook mode, processed weights, and the "
        "forward time of each. Exits 1 when a row exceeds its tolerance, 2 when the model "
        "could not be verified.",
    )
    verify.add_argument(
        "model",
        nargs="?",
        default=None,
        help="official name or alias, local directory, or HF repo id (default: google/gemma-2b)",
    )
    verify.add_argument(
        "--random",
        action="store_true",
        help="random weights with the model's configuration, even when real ones are found",
    )
    verify.add_argument(
        "--layers",
        type=int,
        default=None,
        help="keep only the first N layers (default: all of a real checkpoint; 2 when "
        "the weights are random)",
    )
    verify.add_argument(
        "--dtype", default="float32", choices=["float32", "float64", "bfloat16", "float16"]
    )
    verify.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    verify.add_argument(
        "--prompt",
        action="append",
        default=None,
        help="a prompt to run (repeatable; token ids are used when there is no tokenizer)",
    )
    verify.add_argument(
        "--rtol",
        type=float,
        default=None,
        help="relative tolerance (default: 1e-4 float32, 6e-2 bfloat16, 8e-3 float16)",
    )
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _verify(args: argparse.Namespace) -> int:
    from transformer_lens.verification import DEFAULT_MODEL, VerifyOptions, verify

    options = VerifyOptions(
        model=args.model or DEFAULT_MODEL,
        random_weights=args.random,
        layers=args.layers,
        dtype=args.dtype,
        device=args.device,
        relative_tolerance=args.rtol,
        progress=not args.no_progress,
    )
    if args.prompt:
        options = dataclasses.replace(options, prompts=tuple(args.prompt))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        report = verify(options)
    except (ValueError, NotImplementedError, FileNotFoundError, RuntimeError) as error:
        print(f"transformer-lens verify: cannot verify {options.model}: {error}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.format_table())
    return EXIT_PASSED if report.passed else EXIT_FAILED
