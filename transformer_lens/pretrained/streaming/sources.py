"""Where pretrained tensors come from: an in-memory HF model, or a checkpoint directory
read tensor by tensor (safetensors shards, or PyTorch .bin shards memory-mapped)."""

from __future__ import annotations

import glob
import os
from contextlib import ExitStack
from typing import Any

import torch
from torch import Tensor

from transformer_lens.pretrained.streaming.safetensors_reader import SafetensorsFile


class TensorSource:
    """A read-only mapping from HF key to tensor that loads each tensor on request."""

    def __init__(
        self,
        getters: dict[str, Any],
        stack: ExitStack | None = None,
        row_getters: dict[str, Any] | None = None,
        shape_of: Any = None,
        files: dict[str, SafetensorsFile] | None = None,
        private: bool = False,
        shared: bool = False,
        own: dict[str, Tensor] | None = None,
    ):
        self._getters = getters
        self._row_getters = row_getters
        self._shape_of = shape_of
        self._files = files or {}
        # Whether the model may keep the tensors it returns instead of copying them: they
        # belong to nobody else (read or privately mapped from files), or are shared on
        # purpose.
        self.private = private or shared or own is not None
        # In-memory tensors the model may alias as they are (verify's reference model):
        # `mapped` hands them out as a file source hands out views of its pages.
        self._shared = shared or own is not None
        # A model's own weights (process_weights_): released tensors are dropped.
        self._own = own
        self._stack = stack or ExitStack()

    def keys(self) -> list[str]:
        return list(self._getters)

    def get(self, key: str) -> Tensor:
        return self._getters[key](key)

    def same_tensor(self, key: str, other: str) -> bool:
        """Whether two keys hold one tensor (HF's tied lm_head and embedding in memory)."""
        if key == other:
            return True
        if self._row_getters is not None:  # a file: tied weights are saved once
            return False
        return (
            self.get(key).untyped_storage().data_ptr()
            == self.get(other).untyped_storage().data_ptr()
        )

    def shape(self, key: str) -> tuple[int, ...]:
        if self._shape_of is not None:
            return tuple(self._shape_of(key))
        return tuple(self.get(key).shape)

    def mapped(self, key: str, dtype: torch.dtype) -> Tensor | None:
        """The tensor as a copy-on-write view of a safetensors file's pages, or None when
        the source cannot map it (an in-memory model, a .bin shard, another dtype,
        unaligned data). A shared in-memory source gives the tensor itself."""
        if self._shared:
            tensor = self.get(key)
            return tensor if tensor.dtype == dtype else None
        file = self._files.get(key)
        if file is None or file.dtype(key) != dtype:
            return None
        return file.mapped(key)

    def release(self, key: str, start: int = 0, stop: int | None = None) -> None:
        """Give back the memory that reading rows start:stop of a key took, once they have
        been copied into the model. A source over a model's own weights lets go of a whole
        tensor, so that a weight replaced by its processed value is freed; other in-memory
        sources keep theirs."""
        if self._own is not None and start == 0 and stop is None:
            self._own.pop(key, None)
            return
        file = self._files.get(key)
        if file is not None:
            file.release(key, start, stop)

    def get_rows(self, key: str, start: int, stop: int) -> Tensor:
        """Rows start:stop of a tensor; reads only those rows where the format allows."""
        if self._row_getters is not None:
            return self._row_getters[key](key, start, stop)
        return self.get(key)[start:stop]

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> TensorSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def from_hf_model(hf_model: Any, shared: bool = False) -> TensorSource:
    """The HF model's tensors. By default the model copies them; `shared` lets it alias
    every one it can take as it is (no processing, same dtype and layout), so that editing
    one model's weights edits the other's: for callers that hold both and drop one."""
    state_dict = hf_model.state_dict()
    return TensorSource({key: state_dict.__getitem__ for key in state_dict}, shared=shared)


def from_own_weights(tensors: dict[str, Tensor]) -> TensorSource:
    """A model's own (detached) parameters as the source of processing them in place:
    shared, and each tensor is let go of once its piece is written back."""
    return TensorSource({key: tensors.__getitem__ for key in tensors}, own=tensors)


def from_directory(path: str) -> TensorSource:
    safetensors_files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
    if safetensors_files:
        return _from_safetensors(safetensors_files)
    bin_files = sorted(glob.glob(os.path.join(path, "pytorch_model*.bin")))
    if bin_files:
        return _from_bin(bin_files)
    raise FileNotFoundError(f"No *.safetensors or pytorch_model*.bin weights in {path!r}")


def _from_safetensors(files: list[str]) -> TensorSource:
    stack = ExitStack()
    getters: dict[str, Any] = {}
    row_getters: dict[str, Any] = {}
    handles: dict[str, SafetensorsFile] = {}
    for file in files:
        handle = SafetensorsFile(file)
        stack.callback(handle.close)
        for key in handle.keys():
            getters[key] = handle.get
            row_getters[key] = handle.get_rows
            handles[key] = handle
    return TensorSource(
        getters,
        stack,
        row_getters,
        lambda key: handles[key].shape(key),
        files=handles,
        private=True,
    )


def _from_bin(files: list[str]) -> TensorSource:
    getters: dict[str, Any] = {}
    for file in files:
        shard = torch.load(file, map_location="cpu", mmap=True, weights_only=True)
        for key in shard:
            getters[key] = shard.__getitem__
    return TensorSource(getters, private=True)  # mmap=True maps the shards privately
