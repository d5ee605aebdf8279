"""The piece loop: stream weights into a model, processing them on the way (fold_ln and
friends). A source (a checkpoint, an HF model, the model's own weights) is read piece by
piece (the embedding, each layer, the unembedding): each piece is read, processed and put
into the final parameters before the next is read, so at most one piece exists beside the
model. The vocabulary matrices go by blocks of rows (`vocab_blocks`), a half-precision
model's MLP input matrices by blocks of columns (`mlp_blocks`).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from tqdm import tqdm

from transformer_lens import weight_processing
from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.pretrained import processing_steps
from transformer_lens.pretrained.adapter import transposed, unchanged
from transformer_lens.pretrained.convert import PlannedWeight
from transformer_lens.pretrained.processing_steps import (
    FOLDED_NORMS,
    ProcessingFlags,
    for_processing,
)
from transformer_lens.pretrained.streaming import (
    block_threads,
    float32_buffers,
    mlp_blocks,
    vocab_blocks,
)
from transformer_lens.pretrained.streaming.adopt_or_copy import adopt_or_copy
from transformer_lens.pretrained.streaming.sources import TensorSource
from transformer_lens.pretrained.streaming.target import LoadTarget


def stream_and_process(
    model: LoadTarget,
    planned: list[PlannedWeight],
    source: TensorSource,
    flags: ProcessingFlags,
    progress_bar: bool = False,
) -> None:
    """Read, process and copy one piece at a time into the model's parameters."""
    loader = _StreamingLoader(model, source, flags)
    tie = _keeps_unembedding_tied(planned, source, loader.cfg, loader.steps)
    if tie:
        planned = [w for w in planned if w.key != "unembed.W_U"]
    loader.unembed_sum = _unembedding_sum_during_embedding(planned, source, loader)
    pieces = list(_pieces(planned))
    for layers, unembed, piece in tqdm(
        pieces, desc="Loading weights", unit="piece", disable=not progress_bar, leave=False
    ):
        loader.load_piece(piece, layers, unembed)
    if tie:
        model._tie_unembedding()
        loader.loaded.add("unembed.W_U")
    missing = sorted(set(loader.targets) - loader.loaded)
    if missing:
        raise ValueError(f"Checkpoint left these parameters unset: {missing}")


@dataclasses.dataclass(frozen=True)
class _VocabPass:
    """One pass over a vocabulary matrix's rows (W_E or W_U), shared by its threads."""

    weight: PlannedWeight
    hf_key: str
    axis: int  # our axis that HF's rows become
    companions: dict[str, Tensor]  # ln_final and b_U, which each block's fold reads
    vocab_keys: list[str]  # b_U, sliced alongside the rows
    offsets: dict[str, Tensor]  # center_unembed's folded means, subtracted from each block
    riding_sum: vocab_blocks.VocabSum | None  # W_U's mean summed from W_E's rows (tied)
    mapped: bool  # the matrix stays in the file: the pass only sums


class _StreamingLoader:
    def __init__(self, model: LoadTarget, source: TensorSource, flags: ProcessingFlags):
        self.cfg = copy.copy(model.cfg)  # what processing reads: the norms before a fold
        self.steps = flags.that_apply(self.cfg)
        self.flags = flags
        self.source = source
        if flags.fold_ln and model.cfg.normalization_type in FOLDED_NORMS:
            model._use_folded_norms()
        self.model = model
        self.targets = dict(model.named_parameters())
        self.loaded: set[str] = set()
        self.processes = self.steps.any()
        self.vocabulary_kept = processing_steps.vocabulary_kept_by(self.steps)
        # whole pieces' float32 copies, piece after piece
        self.buffers = float32_buffers.Float32Buffers()
        # center_unembed's sum of W_U over the vocabulary, when W_E's pass reads its rows
        self.unembed_sum: vocab_blocks.VocabSum | None = None

    def process(
        self, tensors: dict[str, Tensor], layers: list[int], unembed: bool, center_unembed: bool
    ) -> dict[str, Tensor]:
        return self.process_and_compare(tensors, layers, unembed, center_unembed)[0]

    def process_and_compare(
        self,
        tensors: dict[str, Tensor],
        layers: list[int],
        unembed: bool,
        center_unembed: bool,
        buffers: float32_buffers.Float32Buffers | None = None,
    ) -> tuple[dict[str, Tensor], set[str]]:
        """The processed tensors, and the keys that processing passed through unchanged (the
        processing steps never write into a tensor: a new value is a new tensor).

        With `buffers` (a streamed piece), processing gets float32 copies, made in them, of
        only the tensors it uses; and when its results are copied into the parameters anyway
        (parameters not in float32), the folded matrices are made in them too.
        """
        steps = dataclasses.replace(
            self.steps, center_unembed=center_unembed and self.steps.center_unembed
        )
        if buffers is None or not self.flags.any():
            inputs, workspace = for_processing(tensors, self.flags), weight_processing.AS_IT_IS
        else:
            inputs, workspace = tensors, self._workspace(tensors, buffers)
        processed = weight_processing.process_weights(
            inputs, self.cfg, steps, layers=layers, unembed=unembed, workspace=workspace
        )
        return processed, {k for k, v in processed.items() if inputs.get(k) is v}

    def _workspace(
        self, tensors: dict[str, Tensor], buffers: float32_buffers.Float32Buffers
    ) -> weight_processing.Workspace:
        """Processing reads float32 copies, made in `buffers`, of only what it uses; and
        writes the folded matrices in `buffers` too when the parameters are not float32 (the
        results are rounded into them anyway; float32 parameters adopt processing's new
        tensors)."""
        rounded = any(self.targets[k].dtype != torch.float32 for k in tensors if k in self.targets)
        return weight_processing.Workspace(
            read=float32_buffers.Float32OnRead(buffers.float32),
            allocate=buffers.empty_like if rounded else None,
        )

    def load_piece(self, piece: list[PlannedWeight], layers: list[int], unembed: bool) -> None:
        """Read, process and put one piece (the embedding, a layer, the unembedding) into the
        parameters, then give the source's pages back."""
        if not self.processes:
            piece = [w for w in piece if not self.read_in_place(w)]
        if unembed:  # the last piece: no later layer reuses the float32 buffers
            self.buffers = float32_buffers.Float32Buffers()
        blockwise = [w for w in piece if vocab_blocks.chunk_axis(w) is not None]
        whole = {w.key: self.load_for_processing(w) for w in piece if w not in blockwise}
        for weight in blockwise:
            self.load_by_vocab_blocks(weight, whole, unembed)
        if unembed and blockwise:
            # ln_final went into every W_U block; what is left is loaded as it is.
            rest = {k: v for k, v in whole.items() if k in self.targets and k not in self.loaded}
        else:
            self.buffers.next_piece()  # the previous piece's copies are in its parameters
            rest = self._processed_piece(piece, whole, layers, unembed)
        self._put(rest)
        for weight in piece:  # copied where they belong: give the file's pages back
            if weight.hf_key is not None:
                self.source.release(weight.hf_key)

    def _processed_piece(
        self,
        piece: list[PlannedWeight],
        whole: dict[str, Tensor],
        layers: list[int],
        unembed: bool,
    ) -> dict[str, Tensor]:
        """The piece's tensors processed, to be put into the parameters: what the MLP column
        blocks already wrote, and what stays mapped in the file, left out."""
        by_blocks = mlp_blocks.keys_folded_by_blocks(
            self.cfg, self.steps.fold_ln, layers, whole, self.targets
        )
        stand_ins = mlp_blocks.stand_ins(self.cfg, layers[0], whole, by_blocks) if by_blocks else {}
        rest, unchanged = self.process_and_compare(
            {**whole, **stand_ins}, layers, unembed, center_unembed=True, buffers=self.buffers
        )
        if by_blocks:
            for key in by_blocks:
                del rest[key]
            # the biases (stand-ins too): an RMSNorm fold leaves them as they were
            rest.update({k: whole[k] for k in stand_ins if k not in by_blocks})
            unchanged -= set(by_blocks)
            mlp_blocks.fold_into(self.targets, whole, by_blocks, layers[0])
            self.loaded.update(by_blocks)
        # What processing left as it was stays in the file, as without processing (W_O and
        # W_out of an RMSNorm model): no copy, nothing read until it is used. (Without
        # processing, whatever can be mapped already was, in load_piece.)
        for weight in piece if self.processes else []:
            if weight.key in unchanged and self.read_in_place(weight):
                del rest[weight.key]
        return rest

    def _put(self, tensors: dict[str, Tensor]) -> None:
        """Adopt or copy into the parameters; a reused buffer is never adopted (only
        processing's new tensors may become parameters), nor anything from a source whose
        tensors belong to someone else."""
        buffers = self.buffers.storages()
        adoptable = {k for k, v in tensors.items() if v.untyped_storage().data_ptr() not in buffers}
        adopt_or_copy(self.targets, tensors, adoptable if self.source.private else set())
        self.loaded.update(tensors)

    def load_for_processing(self, weight: PlannedWeight) -> Tensor:
        """The weight as processing takes it. A half-precision checkpoint loaded into float32
        parameters keeps a weight whose transform only views it in the checkpoint's dtype:
        processing converts what it uses into reused buffers, and the copy into the
        parameter converts the rest, where converting first would write every weight into
        fresh memory once more. Widening is exact, so the values are the same."""
        if (
            self.processes
            and weight.hf_key is not None
            and weight.source.transform.is_view
            and self.cfg.dtype == torch.float32
        ):
            checkpoint_tensor = self.source.get(weight.hf_key)
            if checkpoint_tensor.dtype in (torch.bfloat16, torch.float16):
                return weight.source.transform(checkpoint_tensor, self.cfg)
        return weight.load(self.cfg, self.source.get)

    def read_in_place(self, weight: PlannedWeight) -> bool:
        """Make the parameter a copy-on-write view of the checkpoint file, as HF's loader
        does, when the weight needs no arithmetic: same dtype, and a view-only transform
        whose result has exactly the parameter's layout. Nothing is copied or read now;
        the pages are read when the weight first is. False when it cannot."""
        target = self.targets.get(weight.key)
        if target is None or weight.hf_key is None:
            return False
        if not weight.source.transform.is_view:
            return False
        mapped = self.source.mapped(weight.hf_key, target.dtype)
        if mapped is None:
            return False
        made = weight.source.transform(mapped, self.cfg)
        # W_U may keep the file's (HF's) layout: F.linear reads it in place, and mapping
        # beats copying 1-2 GB into the layout that multiplies a little faster.
        same_layout = made.stride() == target.stride() or (
            self.model._may_take_layout(weight.key, made)
        )
        if not (
            made.untyped_storage().data_ptr() == mapped.untyped_storage().data_ptr()
            and made.shape == target.shape
            and same_layout
        ):
            return False
        target.data = made
        self.loaded.add(weight.key)
        return True

    def load_by_vocab_blocks(
        self, weight: PlannedWeight, companions: dict[str, Tensor], unembed: bool
    ) -> None:
        """W_E or W_U block by block; companions (ln_final, b_U) join each block's fold, and
        b_U, indexed by the vocabulary too, is sliced alongside."""
        axis = vocab_blocks.chunk_axis(weight)
        assert axis is not None and weight.hf_key is not None
        vocab_keys = ["unembed.b_U"] if unembed and "unembed.b_U" in companions else []
        offsets = self._centring_offsets(weight, axis, companions, vocab_keys, unembed)
        riding_sum = self.unembed_sum if weight.key == "embed.W_E" else None
        # A matrix processing leaves as it is (W_E of an RMSNorm model without Gemma's
        # scale) stays in the file, as without processing: the pass below then only sums
        # its rows for center_unembed's mean, or is not needed at all.
        mapped = (
            weight.key in self.vocabulary_kept and not vocab_keys and self.read_in_place(weight)
        )
        if mapped and riding_sum is None:
            return
        vocab_pass = _VocabPass(
            weight, weight.hf_key, axis, companions, vocab_keys, offsets, riding_sum, mapped
        )
        block_threads.for_each_share(
            functools.partial(self._load_blocks, vocab_pass),
            vocab_blocks.row_blocks(self.source, weight.hf_key),
        )
        self.loaded.update([weight.key, *vocab_keys])

    def _centring_offsets(
        self,
        weight: PlannedWeight,
        axis: int,
        companions: dict[str, Tensor],
        vocab_keys: list[str],
        unembed: bool,
    ) -> dict[str, Tensor]:
        """center_unembed's folded means over the vocabulary, subtracted from each folded
        block (folding is linear: the mean of the folded blocks is the fold of the mean)."""
        if not (unembed and self.steps.center_unembed):
            return {}
        if self.unembed_sum is not None:
            mean = self.unembed_sum.mean()
        else:
            mean = vocab_blocks.vocab_mean(weight, axis, self.cfg, self.source)
        means = {weight.key: mean}
        for key in vocab_keys:
            means[key] = companions[key].float().mean(0, keepdim=True)
        return self._block(companions, means, weight.key, vocab_keys)

    def _load_blocks(self, vocab_pass: _VocabPass, blocks: Sequence[tuple[int, int]]) -> None:
        """One thread's share of a vocabulary pass: each block of HF's rows is summed for
        the mean, written into the parameter, or both, then its pages are given back."""
        weight, hf_key = vocab_pass.weight, vocab_pass.hf_key
        staging = float32_buffers.Staging()  # one per thread
        for start, stop in blocks:
            hf_rows = self.source.get_rows(hf_key, start, stop)
            if vocab_pass.riding_sum is not None:
                vocab_pass.riding_sum.add(start, hf_rows)
            if not vocab_pass.mapped and (
                vocab_pass.vocab_keys
                or not self._write_block_directly(weight, vocab_pass.axis, hf_rows, start)
            ):
                self._write_processed_block(vocab_pass, staging, hf_rows, start)
            self.source.release(hf_key, start, stop)

    def _write_processed_block(
        self,
        vocab_pass: _VocabPass,
        staging: float32_buffers.Staging,
        hf_rows: Tensor,
        start: int,
    ) -> None:
        """Fold one block of HF's rows (with its slice of b_U) and write it into the
        parameters' rows, centred by the pass's offsets on the way."""
        weight, companions, vocab_keys = (
            vocab_pass.weight,
            vocab_pass.companions,
            vocab_pass.vocab_keys,
        )
        stop = start + hf_rows.shape[0]
        block = {weight.key: weight.made_from(hf_rows, self.cfg)}
        block.update({k: companions[k][start:stop] for k in vocab_keys})
        processed = self._block(companions, block, weight.key, vocab_keys)
        with torch.no_grad():
            for key, value in processed.items():
                axis = vocab_pass.axis if key == weight.key else 0
                index = vocab_blocks.block_index(axis, start, stop)
                staging.write(self.targets[key][index], value, vocab_pass.offsets.get(key))

    def _write_block_directly(
        self, weight: PlannedWeight, axis: int, hf_rows: Tensor, start: int
    ) -> bool:
        """When processing leaves the matrix alone, a transform that can write into a given
        tensor (Gemma's embedding scale) writes each block of rows straight into the
        parameter: no block-sized temporary and no copy. False when that does not apply."""
        transform = weight.source.transform
        if weight.key not in self.vocabulary_kept or not transform.writes_out:
            return False
        stop = start + hf_rows.shape[0]
        rows = self.targets[weight.key][vocab_blocks.block_index(axis, start, stop)]
        with torch.no_grad():
            transform(hf_rows.to(rows.dtype), self.cfg, out=rows)  # rounded first, as made_from
        return True

    def _block(
        self,
        companions: dict[str, Tensor],
        block: dict[str, Tensor],
        key: str,
        vocab_keys: list[str],
    ) -> dict[str, Tensor]:
        """Fold (and centre writes of) one block; center_unembed is applied by the caller."""
        unembed = key.startswith("unembed.")
        processed = self.process({**companions, **block}, [], unembed, center_unembed=False)
        return {k: processed[k] for k in (key, *vocab_keys)}


def _unembedding_sum_during_embedding(
    planned: list[PlannedWeight], source: TensorSource, loader: _StreamingLoader
) -> vocab_blocks.VocabSum | None:
    """With tied embeddings (W_U made from W_E's checkpoint tensor), center_unembed's mean of
    W_U is summed from the rows W_E's block pass reads anyway, instead of reading the whole
    matrix once more before W_U's pass. None when that does not apply."""
    by_key = {w.key: w for w in planned}
    embed, unembed = by_key.get("embed.W_E"), by_key.get("unembed.W_U")
    if not (loader.processes and loader.steps.center_unembed) or embed is None:
        return None
    if unembed is None or embed.hf_key is None or unembed.hf_key is None:
        return None
    axis = vocab_blocks.chunk_axis(unembed)
    if (
        axis is None
        or vocab_blocks.chunk_axis(embed) is None
        or not source.same_tensor(embed.hf_key, unembed.hf_key)
    ):
        return None
    return vocab_blocks.VocabSum(unembed, axis, loader.cfg, source)


def _keeps_unembedding_tied(
    planned: list[PlannedWeight],
    source: TensorSource,
    cfg: HookedTransformerConfig,
    steps: ProcessingFlags,
) -> bool:
    """True when W_U is W_E^T in the checkpoint and no processing step makes them differ:
    then the model stores the matrix once."""
    by_key = {w.key: w for w in planned}
    embed, unembed = by_key.get("embed.W_E"), by_key.get("unembed.W_U")
    if embed is None or unembed is None or embed.hf_key is None or unembed.hf_key is None:
        return False
    same_matrix = (
        embed.source.transform is unchanged
        and unembed.source.transform is transposed
        and source.same_tensor(embed.hf_key, unembed.hf_key)
    )
    folds_final_norm = steps.fold_ln and cfg.normalization_type in FOLDED_NORMS
    changed = folds_final_norm or steps.center_unembed or steps.center_writing_weights
    return same_matrix and not changed


def _pieces(
    planned: list[PlannedWeight],
) -> Iterator[tuple[list[int], bool, list[PlannedWeight]]]:
    """(layers, is the unembedding piece, weights): embedding first, then each layer, then
    the unembedding (ln_final folds into W_U, so they travel together)."""
    by_layer: dict[int, list[PlannedWeight]] = {}
    embed, unembed = [], []
    for weight in planned:
        if weight.layer is not None:
            by_layer.setdefault(weight.layer, []).append(weight)
        elif weight.key.startswith(("unembed.", "ln_final.")):
            unembed.append(weight)
        else:
            embed.append(weight)
    yield [], False, embed
    for layer in sorted(by_layer):
        yield [layer], False, by_layer[layer]
    yield [], True, unembed
