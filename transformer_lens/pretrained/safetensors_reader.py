"""A safetensors reader that copies each tensor (or a range of its rows) into private memory.

`safetensors.safe_open` memory-maps the file: every page it reads stays in the process's
resident set while the file is open, so a streamed load would peak at model + checkpoint.
Reading with `os.pread` puts the bytes into ordinary memory that is freed with the tensor.
Format: 8-byte little-endian header length, a JSON header {name: {dtype, shape,
data_offsets}}, then the raw little-endian data.
"""

from __future__ import annotations

import json
import math
import os
import struct

import torch
from torch import Tensor

_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}  # fmt: skip


class SafetensorsFile:
    def __init__(self, path: str):
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)
        (header_size,) = struct.unpack("<Q", os.pread(self._fd, 8, 0))
        header = json.loads(os.pread(self._fd, header_size, 8))
        header.pop("__metadata__", None)
        self._data_start = 8 + header_size
        self._entries: dict[str, dict] = header

    def keys(self) -> list[str]:
        return list(self._entries)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._entries[key]["shape"])

    def get(self, key: str) -> Tensor:
        return self.get_rows(key, 0, self.shape(key)[0] if self.shape(key) else 1)

    def dtype(self, key: str) -> torch.dtype:
        name = self._entries[key]["dtype"]
        dtype = _DTYPES.get(name)
        if dtype is None:
            raise ValueError(f"{self.path}: unsupported safetensors dtype {name} for {key}")
        return dtype

    def get_rows(self, key: str, start: int, stop: int) -> Tensor:
        """Rows start:stop of the tensor (its first axis), read from disk alone."""
        shape = self.shape(key)
        # Uninitialised memory: the read touches each page once (zero-filling would twice).
        rows = torch.empty([stop - start, *shape[1:]] if shape else [], dtype=self.dtype(key))
        self._read(key, rows, start)
        return rows

    def read_into(self, key: str, out: Tensor) -> None:
        """Read the whole tensor straight into `out`: contiguous, of its shape and dtype
        (a parameter's own storage, so that the bytes are written once)."""
        if out.shape != self.shape(key) or out.dtype != self.dtype(key):
            raise ValueError(
                f"{self.path}: {key} is {self.shape(key)} {self.dtype(key)}, "
                f"cannot read it into {tuple(out.shape)} {out.dtype}"
            )
        self._read(key, out, 0)

    def _read(self, key: str, out: Tensor, start_row: int) -> None:
        if not out.is_contiguous() or out.device.type != "cpu":
            raise ValueError(f"{key}: can only read into a contiguous CPU tensor")
        shape = self.shape(key)
        row_bytes = math.prod(shape[1:]) * out.element_size() if shape else out.element_size()
        offset = self._data_start + self._entries[key]["data_offsets"][0] + start_row * row_bytes
        count = out.numel() * out.element_size()
        view, done = out.view(-1).view(torch.uint8).numpy().data, 0
        while done < count:  # pread may return fewer bytes than asked for
            chunk = os.preadv(self._fd, [view[done:]], offset + done)
            if chunk == 0:
                raise ValueError(f"{self.path}: truncated data for {key}")
            done += chunk

    def close(self) -> None:
        os.close(self._fd)
