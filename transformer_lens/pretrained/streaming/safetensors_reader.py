"""A safetensors reader that maps the file copy-on-write and hands out views of it.

Like HF's loader, nothing is read until a tensor is used, and writing to a view copies only
the pages written (the file never changes). Unlike `safetensors.safe_open`, pages that have
been copied where they belong can be given back (`release`), so a streamed load does not
keep the whole checkpoint resident beside the model. Data not aligned for its dtype is read
with `os.preadv` into private memory instead. Format: 8-byte little-endian header length,
a JSON header {name: {dtype, shape, data_offsets}}, then the raw little-endian data.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
import threading

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
        self._mapping: mmap.mmap | None = None
        self._mapping_lock = threading.Lock()

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
        """Rows start:stop of the tensor (its first axis): a view of the mapped file when
        the data is aligned (nothing is copied; `release` gives the pages back once they
        have been used), else read from disk into private memory."""
        mapped = self.mapped(key)
        if mapped is not None:
            return mapped[start:stop] if mapped.ndim else mapped
        shape = self.shape(key)
        # Uninitialised memory: the read touches each page once (zero-filling would twice).
        rows = torch.empty([stop - start, *shape[1:]] if shape else [], dtype=self.dtype(key))
        self._read(key, rows, start)
        return rows

    def mapped(self, key: str) -> Tensor | None:
        """The tensor as a copy-on-write view of the file's pages (what HF's loader uses):
        nothing is read until the tensor is, and writing to it copies only the pages
        written. None when the data is not aligned for its dtype."""
        dtype = self.dtype(key)
        offset = self._data_start + self._entries[key]["data_offsets"][0]
        item_size = torch.empty((), dtype=dtype).element_size()
        if offset % item_size:
            return None
        with self._mapping_lock:  # blocks are read from several threads
            if self._mapping is None:
                # ACCESS_COPY (MAP_PRIVATE): writable, and writes never reach the file.
                self._mapping = mmap.mmap(self._fd, 0, access=mmap.ACCESS_COPY)
        if offset + self._nbytes(key) > len(self._mapping):
            raise ValueError(f"{self.path}: truncated data for {key}")
        shape = self.shape(key)
        count = math.prod(shape)
        if count == 0:
            return None
        flat = torch.frombuffer(self._mapping, dtype=dtype, count=count, offset=offset)
        return flat.view(shape)

    def release(self, key: str, start: int = 0, stop: int | None = None) -> None:
        """Drop rows start:stop of a tensor's mapped pages from this process's memory, once
        they have been copied where they belong. Safe whatever still views them: pages
        that were never written are read from the file again if they are used again."""
        if self._mapping is None or not hasattr(mmap, "MADV_DONTNEED"):  # e.g. Windows
            return
        shape = self.shape(key)
        rows = shape[0] if shape else 1
        stop = rows if stop is None else stop
        row_bytes = (self._nbytes(key) // rows) if rows else 0
        begin = self._data_start + self._entries[key]["data_offsets"][0] + start * row_bytes
        end = begin + (stop - start) * row_bytes
        page = mmap.PAGESIZE
        begin, end = -(-begin // page) * page, end // page * page  # whole pages inside only
        if end > begin:
            self._mapping.madvise(mmap.MADV_DONTNEED, begin, end - begin)

    def _nbytes(self, key: str) -> int:
        first, last = self._entries[key]["data_offsets"]
        return int(last - first)

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
