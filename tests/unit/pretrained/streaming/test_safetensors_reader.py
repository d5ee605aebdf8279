"""The safetensors reader: mapped views, rows, release, the aligned/unaligned cases and
the errors, checked against safetensors' own writer and reader."""

import json
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from transformer_lens.pretrained.streaming.safetensors_reader import SafetensorsFile

TENSORS = {
    "matrix": torch.randn(300, 64, generator=torch.Generator().manual_seed(0)),
    "half": torch.randn(7, 5, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16),
    "vector": torch.arange(11, dtype=torch.int64),
}


@pytest.fixture
def path(tmp_path):
    file = tmp_path / "weights.safetensors"
    save_file(TENSORS, str(file))
    return file


def test_get_and_rows_equal_the_reference_reader(path):
    reference = load_file(str(path))
    file = SafetensorsFile(str(path))
    try:
        for key, expected in reference.items():
            assert file.shape(key) == tuple(expected.shape) and file.dtype(key) == expected.dtype
            assert torch.equal(file.get(key), expected)
        assert torch.equal(file.get_rows("matrix", 100, 164), reference["matrix"][100:164])
    finally:
        file.close()


def test_released_rows_read_back_the_same_values(path):
    """Release drops pages from memory only: reading them again gives the file's bytes."""
    file = SafetensorsFile(str(path))
    try:
        rows = file.get_rows("matrix", 0, 300)
        before = rows.clone()
        file.release("matrix")
        file.release("matrix", 10, 20)
        assert torch.equal(rows, before)
    finally:
        file.close()


def test_mapped_tensor_is_copy_on_write(path):
    file = SafetensorsFile(str(path))
    try:
        mapped = file.mapped("matrix")
        assert mapped is not None
        mapped.zero_()
        assert torch.equal(load_file(str(path))["matrix"], TENSORS["matrix"])
    finally:
        file.close()


def test_unaligned_data_is_read_not_mapped(tmp_path):
    """A hand-written file whose float32 data starts at an odd offset: values still right."""
    values = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    header = json.dumps({"x": {"dtype": "F32", "shape": [2, 3], "data_offsets": [1, 25]}})
    raw = header.encode()
    file_path = tmp_path / "odd.safetensors"
    file_path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" + values.numpy().tobytes())
    file = SafetensorsFile(str(file_path))
    try:
        assert file.mapped("x") is None
        assert torch.equal(file.get("x"), values)
    finally:
        file.close()


def test_unknown_dtype_and_truncated_data_raise(tmp_path):
    header = json.dumps({"x": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}).encode()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(struct.pack("<Q", len(header)) + header + b"\0\0")
    with pytest.raises(ValueError, match="unsupported safetensors dtype F8_E4M3"):
        SafetensorsFile(str(bad)).get("x")
    header = json.dumps({"y": {"dtype": "F32", "shape": [4], "data_offsets": [1, 17]}}).encode()
    short = tmp_path / "short.safetensors"
    short.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 5)
    with pytest.raises(ValueError, match="truncated data for y"):
        SafetensorsFile(str(short)).get("y")  # unaligned: read
    header = json.dumps({"z": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    header += b" " * (-len(header) % 8)  # aligned: mapped
    short = tmp_path / "short_aligned.safetensors"
    short.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    with pytest.raises(ValueError, match="truncated data for z"):
        SafetensorsFile(str(short)).get("z")
