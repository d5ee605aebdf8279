"""`F.linear` that keeps every CPU core busy when the input has few rows.

For a float32 input of a few rows (a decoding step, a short prompt) torch's CPU `F.linear`
is one BLAS call that reads the weight at about one core's memory bandwidth (for one row,
two threads take as long as one). Splitting the weight's output features into one block
per thread and running the blocks as a batched matmul (`bmm` runs its batch items in
parallel, each a single-threaded product) reads the weight on every core at once.
Measured on the 2-core development machine (`benchmarks/few_rows.py`, BENCHMARKS.md):
1.4-1.7x faster for one row, 1.1-1.15x at 128 rows, level at 512, so the split stops at
`MAX_SPLIT_ROWS`. For more than one row the output is written once more (a copy the size
of the output, freed at once). bfloat16/float16 go through oneDNN, which already uses
every core, and CUDA is left to cuBLAS.

Each output element is still one dot product of the same row and column; only the
summation order inside the kernel may differ (float32 rounding, ~1e-7 relative).
"""

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

MAX_SPLIT_ROWS = 256
# Each block holds at least this many weight elements (512 KiB in float32): smaller, a
# block's product takes microseconds and the split's own overhead (a few views, one bmm
# dispatch) would be most of it. On 2 threads: weights of 2^18 elements and up are split.
MIN_BLOCK_ELEMENTS = 1 << 17


def linear(
    x: Float[Tensor, "... d_in"],
    weight: Float[Tensor, "d_out d_in"],
    bias: Float[Tensor, " d_out"] | None = None,
) -> Float[Tensor, "... d_out"]:
    """`F.linear(x, weight, bias)`, with the weight's rows split across CPU threads when
    `x` has at most MAX_SPLIT_ROWS rows."""
    blocks = _thread_blocks(x, weight, bias)
    if blocks < 2:
        return F.linear(x, weight, bias)
    d_out, d_in = weight.shape
    rows = x.reshape(-1, d_in)
    split = d_out - d_out % blocks
    per_block = weight[:split].view(blocks, split // blocks, d_in).transpose(1, 2)
    # [blocks, rows, d_in] @ [blocks, d_in, split / blocks], then [rows, blocks, split /
    # blocks] -> [rows, split]: free for one row, else one copy of the output. Measured
    # and dropped: the weight as the left operand (torch then takes a ~10x slower kernel
    # for the row-major layout and a handful of rows; 0-8% faster from 64 rows once its
    # transposed output is copied), and writing into a strided `out=` (20-40% slower).
    out = torch.bmm(rows.expand(blocks, *rows.shape), per_block)
    out = out.permute(1, 0, 2).contiguous().view(rows.shape[0], split)
    if split < d_out:
        out = torch.cat([out, F.linear(rows, weight[split:])], dim=-1)
    if bias is not None:
        out.add_(bias)  # out is this call's own memory
    return out.reshape(*x.shape[:-1], d_out)


def _thread_blocks(x: Tensor, weight: Tensor, bias: Tensor | None) -> int:
    """How many blocks to split the weight into; under 2 means plain F.linear."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return 1
    if weight.ndim != 2 or x.ndim == 0:
        return 1
    if x.shape[-1] != weight.shape[1] or (
        bias is not None and (bias.shape != weight.shape[:1] or bias.dtype != weight.dtype)
    ):
        return 1  # F.linear raises its own error (or broadcasts the bias as it always has)
    if x.numel() > MAX_SPLIT_ROWS * x.shape[-1] or x.numel() == 0:
        return 1
    # The two layouts measured: HF's (rows contiguous) and its transpose (columns
    # contiguous); anything else stays with F.linear.
    if weight.stride(1) != 1 and weight.stride(0) != 1:
        return 1
    # One block per thread, fewer where blocks would be small (many threads, a narrow
    # weight) or would have fewer than two output features each.
    by_size = weight.numel() // max(MIN_BLOCK_ELEMENTS, 1)
    return min(torch.get_num_threads(), by_size, weight.shape[0] // 2)
