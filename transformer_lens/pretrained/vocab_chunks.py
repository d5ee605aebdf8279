"""Load the vocabulary matrices (W_E, W_U) a block of vocabulary rows at a time.

For large vocabularies (Gemma: 256k x 2048) the embedding and unembedding are the biggest
tensors; processing them whole would hold several full copies at once. Every processing
step is local to a vocabulary entry except center_unembed, which subtracts the mean over
the vocabulary. Folding is linear in W_U and b_U, so that mean is the fold of the mean
column: we fold the raw mean once, then subtract it from each folded block.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.pretrained import block_threads
from transformer_lens.pretrained.adapter import ROW_LOCAL_TRANSFORMS
from transformer_lens.pretrained.convert import PlannedWeight
from transformer_lens.pretrained.sources import TensorSource

# Small enough that each block's temporaries come from memory the allocator reuses (and stay
# in cache): blocks of 64 MiB were fresh mappings each time, a page fault per 4 KiB, which
# doubled the page faults of a processed Gemma load.
_BLOCK_BYTES = 4 * 2**20
# (our key, our vocabulary axis when it comes from a row-local transform of HF rows)
CHUNKABLE = {"embed.W_E", "unembed.W_U"}


def chunk_axis(weight: PlannedWeight) -> int | None:
    """Our axis that HF's rows become, when this weight can be loaded by row blocks."""
    if weight.key not in CHUNKABLE or weight.hf_key is None:
        return None
    return ROW_LOCAL_TRANSFORMS.get(weight.source.transform)


def row_blocks(source: TensorSource, hf_key: str) -> list[tuple[int, int]]:
    rows, *rest = source.shape(hf_key)
    row_bytes = max(1, int(torch.tensor(rest).prod()) if rest else 1) * 4
    size = max(1, _BLOCK_BYTES // row_bytes)
    return [(start, min(start + size, rows)) for start in range(0, rows, size)]


def block_index(axis: int, start: int, stop: int) -> tuple[slice, ...]:
    return (slice(None),) * axis + (slice(start, stop),)


class VocabSum:
    """Float32 sum over the vocabulary of a row-chunkable weight, fed HF's rows block by
    block in any order, from any thread: the blocks' sums are added in vocabulary order at
    the end, so every pass over the blocks of `row_blocks` gives the same bits."""

    def __init__(self, weight: PlannedWeight, axis: int, cfg: HookedTransformerConfig):
        assert weight.hf_key is not None
        self.weight, self.axis, self.cfg = weight, axis, cfg
        # (rows, their sum) by the block's first row: one dict store per block, which
        # threads may make concurrently
        self.block_sums: dict[int, tuple[int, Tensor]] = {}

    def add(self, start: int, hf_rows: Tensor) -> None:
        made = self.weight.made_from(hf_rows, self.cfg)
        self.block_sums[start] = (hf_rows.shape[0], made.float().sum(self.axis, keepdim=True))

    def mean(self, source: TensorSource) -> Tensor:
        assert self.weight.hf_key is not None
        vocabulary = source.shape(self.weight.hf_key)[0]
        rows = sum(count for count, _ in self.block_sums.values())
        if rows != vocabulary or not self.block_sums:
            raise RuntimeError(f"{self.weight.key}: summed {rows} of {vocabulary} rows")
        ordered = [self.block_sums[start][1] for start in sorted(self.block_sums)]
        total = ordered[0]
        for block_sum in ordered[1:]:
            total = total + block_sum
        return total / vocabulary


def vocab_mean(
    weight: PlannedWeight, axis: int, cfg: HookedTransformerConfig, source: TensorSource
) -> Tensor:
    """Mean over the vocabulary of a row-chunkable weight, in float32, read block by block."""
    assert weight.hf_key is not None
    hf_key, running = weight.hf_key, VocabSum(weight, axis, cfg)

    def add_share(blocks: Sequence[tuple[int, int]]) -> None:
        for start, stop in blocks:
            running.add(start, source.get_rows(hf_key, start, stop))
            source.release(hf_key, start, stop)

    block_threads.for_each_share(add_share, row_blocks(source, hf_key))
    return running.mean(source)
