"""Load the vocabulary matrices (W_E, W_U) a block of vocabulary rows at a time.

For large vocabularies (Gemma: 256k x 2048) the embedding and unembedding are the biggest
tensors; processing them whole would hold several full copies at once. Every processing
step is local to a vocabulary entry except center_unembed, which subtracts the mean over
the vocabulary. Folding is linear in W_U and b_U, so that mean is the fold of the mean
column: we fold the raw mean once, then subtract it from each folded block.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch
from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.pretrained.convert import PlannedWeight
from transformer_lens.pretrained.streaming import block_threads
from transformer_lens.pretrained.streaming.sources import TensorSource

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
    return weight.source.transform.row_axis


def row_blocks(source: TensorSource, hf_key: str) -> list[tuple[int, int]]:
    rows, *rest = source.shape(hf_key)
    row_bytes = max(1, int(torch.tensor(rest).prod()) if rest else 1) * 4
    size = max(1, _BLOCK_BYTES // row_bytes)
    return [(start, min(start + size, rows)) for start in range(0, rows, size)]


def block_index(axis: int, start: int, stop: int) -> tuple[slice, ...]:
    return (slice(None),) * axis + (slice(start, stop),)


class VocabSum:
    """Float32 sum over the vocabulary of a row-chunkable weight, fed HF's rows by the
    blocks of `row_blocks`, in any order and from any thread: the blocks' sums are added in
    vocabulary order at the end, so every pass over the blocks gives the same bits."""

    def __init__(
        self,
        weight: PlannedWeight,
        axis: int,
        cfg: HookedTransformerConfig,
        source: TensorSource,
    ):
        assert weight.hf_key is not None
        self.weight, self.axis, self.cfg = weight, axis, cfg
        self.blocks = row_blocks(source, weight.hf_key)
        self.position = {block: i for i, block in enumerate(self.blocks)}
        # One tensor for every block's sum, made on the first block: hundreds of small
        # tensors kept among the blocks' large temporaries would pin freed heap memory
        # (gigabytes for Gemma's 256k rows) that the allocator could not give back.
        self.sums: Tensor | None = None
        self.added: set[int] = set()
        self._first = threading.Lock()

    def add(self, start: int, hf_rows: Tensor) -> None:
        block = (start, start + hf_rows.shape[0])
        if block not in self.position:
            raise ValueError(f"{self.weight.key}: rows {block} are not one of its blocks")
        made = self.weight.made_from(hf_rows, self.cfg)
        block_sum = made.float().sum(self.axis, keepdim=True)
        with self._first:
            if self.sums is None:
                self.sums = block_sum.new_empty((len(self.blocks), *block_sum.shape))
        self.sums[self.position[block]] = block_sum
        self.added.add(self.position[block])

    def mean(self) -> Tensor:
        missing = len(self.blocks) - len(self.added)
        if missing or self.sums is None:
            raise RuntimeError(f"{self.weight.key}: {missing} of its row blocks were not summed")
        total = self.sums[0]
        for block_sum in self.sums[1:]:
            total = total + block_sum
        return total / self.blocks[-1][1]


def vocab_mean(
    weight: PlannedWeight, axis: int, cfg: HookedTransformerConfig, source: TensorSource
) -> Tensor:
    """Mean over the vocabulary of a row-chunkable weight, in float32, read block by block."""
    assert weight.hf_key is not None
    hf_key, running = weight.hf_key, VocabSum(weight, axis, cfg, source)

    def add_share(blocks: Sequence[tuple[int, int]]) -> None:
        for start, stop in blocks:
            running.add(start, source.get_rows(hf_key, start, stop))
            source.release(hf_key, start, stop)

    block_threads.for_each_share(add_share, running.blocks)
    return running.mean()
