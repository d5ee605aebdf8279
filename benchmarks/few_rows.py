"""F.linear against components._linear.linear (the weight split across CPU threads) on the
Gemma-2b projections, for inputs of a few rows: where the split pays and where it stops.

For each product and row count, both run interleaved (one warm-up, then rounds, medians);
the split is forced on (MAX_SPLIT_ROWS raised) so that row counts past the cut-off show why
it is there. Weights in the two layouts our parameters use: HF's [d_out, d_in] and, for the
float32 unembedding, row-major [d_in, d_out].

Run: python benchmarks/few_rows.py [--rounds 7] [--threads N]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from speed import interleaved  # benchmarks/speed.py, beside this script

from transformer_lens.components import _linear

# (name, d_in, d_out, row-major): Gemma-2b's unembedding, MLP input, MLP output, W_Q.
PRODUCTS = [
    ("unembed W_U (row-major)", 2048, 256000, True),
    ("MLP W_in / W_gate", 2048, 16384, False),
    ("MLP W_out", 16384, 2048, False),
    ("attention W_Q", 2048, 2048, False),
]
ROWS = [1, 8, 32, 128, 512]


def median_ms(x: torch.Tensor, weight: torch.Tensor, rounds: int) -> dict[str, float]:
    """Median milliseconds of F.linear and of the split, interleaved after one warm-up."""
    seconds = interleaved(
        {"plain": lambda: F.linear(x, weight), "split": lambda: _linear.linear(x, weight)},
        rounds,
        "cpu",
    )
    return {name: value * 1e3 for name, value in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    _linear.MAX_SPLIT_ROWS = max(ROWS)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, float32, medians (ms)")
    print(f"{'product':<26}{'rows':>6}{'F.linear':>10}{'split':>10}{'speed-up':>10}")
    generator = torch.Generator().manual_seed(0)
    for name, d_in, d_out, row_major in PRODUCTS:
        weight = torch.randn(d_out, d_in, generator=generator)
        if row_major:
            weight = weight.T.contiguous().T
        for rows in ROWS:
            x = torch.randn(rows, d_in, generator=generator)
            rounds = args.rounds if d_out * rows < 2**25 else max(3, args.rounds // 2)
            with torch.inference_mode():
                ms = median_ms(x, weight, rounds)
            print(
                f"{name:<26}{rows:>6}{ms['plain']:>10.2f}{ms['split']:>10.2f}"
                f"{ms['plain'] / ms['split']:>9.2f}x"
            )


if __name__ == "__main__":
    main()
