"""Reused buffers for a streamed load: each block or piece is staged in memory that the
previous one used, because on first touch fresh pages cost more to fault in than to fill.

- `Staging` writes a processed vocabulary block into a parameter's rows (one per thread);
- `Float32Buffers` holds the float32 copies that processing reads and the folded matrices it
  writes, layer after layer; `Float32OnRead` makes those copies only for the tensors that
  processing actually reads.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


class Staging:
    """Writes a processed block into a parameter's rows through reused buffers (no fresh
    pages per block), so that the last step is a plain copy or subtraction:
    - a row-major W_U is written from HF's transposed rows: the block is transposed into a
      contiguous buffer first (torch's fast 2-D transpose), so that the parameter's rows
      are then written in long contiguous runs;
    - a block processed in float32 for a parameter of another dtype is centred in float32
      first: torch's subtraction that rounds to bfloat16 as it writes is ~10x slower than
      the subtraction followed by a rounding copy."""

    def __init__(self) -> None:
        self.buffers: dict[tuple[object, ...], Tensor] = {}

    def write(self, rows: Tensor, value: Tensor, offset: Tensor | None) -> None:
        """rows <- value - offset (value when offset is None), in rows' dtype and layout."""
        if rows.stride()[-1] == 1 and value.stride()[-1] != 1:
            value = self._buffer(value, contiguous=True).copy_(value)
            if offset is not None and value.dtype != rows.dtype:
                value, offset = value.sub_(offset), None
        elif offset is not None and value.dtype != rows.dtype:
            value, offset = torch.sub(value, offset, out=self._buffer(value)), None
        if offset is None:
            rows.copy_(value)
        else:  # centre straight into the parameter's rows
            torch.sub(value, offset, out=rows)

    def _buffer(self, like: Tensor, contiguous: bool = False) -> Tensor:
        """A buffer of like's shape and dtype, contiguous or in like's layout; one per
        block shape (all blocks but the last have the same)."""
        stride = None if contiguous else like.stride()
        key = (tuple(like.shape), stride, like.dtype)
        if key not in self.buffers:
            if stride is None:
                self.buffers[key] = torch.empty(like.shape, dtype=like.dtype)
            else:
                self.buffers[key] = torch.empty_strided(like.shape, stride, dtype=like.dtype)
        return self.buffers[key]


class Float32Buffers:
    """The float32 copies that processing reads, and the folded matrices it writes, in
    memory reused from piece to piece.

    Every layer of a bfloat16 checkpoint has the same shapes; without reuse each layer's
    copies and results are fresh pages (hundreds of MB a layer for Gemma-2b), which cost
    more to fault in than to fill. A piece's buffers must be used up (copied into the
    parameters, never kept) before `next_piece` hands them out again."""

    def __init__(self) -> None:
        self.free: dict[tuple[object, ...], list[Tensor]] = {}
        self.taken: list[tuple[tuple[object, ...], Tensor]] = []

    def next_piece(self) -> None:
        for layout, buffer in self.taken:
            self.free.setdefault(layout, []).append(buffer)
        self.taken = []

    def storages(self) -> set[int]:
        """The addresses of the buffers handed out for the current piece."""
        return {buffer.untyped_storage().data_ptr() for _, buffer in self.taken}

    def float32(self, tensor: Tensor) -> Tensor:
        if tensor.dtype == torch.float32:
            return tensor
        return self.empty_like(tensor, torch.float32).copy_(tensor)

    def empty_like(self, tensor: Tensor, dtype: torch.dtype) -> Tensor:
        """An uninitialised tensor of tensor's shape and layout (a transposed view stays
        transposed: no transposing copy); reused when float32, new otherwise."""
        if dtype != torch.float32:
            return torch.empty_like(tensor, dtype=dtype)
        # Keyed by the input's layout, which decides empty_like's. (Asking empty_like on the
        # meta device would import sympy: 0.4 s, more than a layer takes to load.)
        layout = (tuple(tensor.shape), tensor.stride(), tensor.device)
        pool = self.free.get(layout)
        buffer = pool.pop() if pool else torch.empty_like(tensor, dtype=torch.float32)
        self.taken.append((layout, buffer))
        return buffer


class Float32OnRead:
    """A weight_processing.Workspace `read`: a tensor's float32 copy, made by `to_float32`
    the first time processing reads it and reused after, so that processing computes in
    float32 but converts only what it uses (a weight it passes through untouched, W_O or
    W_out of an RMSNorm model, is never copied). Float32 and integer tensors are read as
    they are."""

    def __init__(self, to_float32: Callable[[Tensor], Tensor]):
        self.to_float32 = to_float32
        # by identity; the read tensor is kept so that its id is not reused meanwhile
        self.copies: dict[int, tuple[Tensor, Tensor]] = {}

    def __call__(self, tensor: Tensor) -> Tensor:
        if not tensor.is_floating_point() or tensor.dtype == torch.float32:
            return tensor
        if id(tensor) not in self.copies:
            self.copies[id(tensor)] = (tensor, self.to_float32(tensor))
        return self.copies[id(tensor)][1]
