"""Transparent huge pages for the vocabulary matrices: when they are used (Linux, THP in
madvise mode, enough free 2 MiB blocks), what the tensor looks like, and a load that uses
them giving the same weights as one that does not. The kernel's files are faked, so that
every case runs on any machine."""

import sys
import warnings

import pytest
import torch

from tests.unit.test_vocab_blocks import BLOCK_ROWS, gemma_checkpoint
from transformer_lens import HookedTransformer
from transformer_lens.pretrained import huge_pages, vocab_chunks

HUGE_PAGE = 2 * 2**20
# order 0..10 counts for two zones: DMA32 has 3 free 4 MiB blocks (order 10), Normal 5 free
# 2 MiB blocks (order 9) and small ones that do not count
BUDDYINFO = (
    "Node 0, zone    DMA32      1      1      4      2      5      4      3      3      4      0      3\n"
    "Node 0, zone   Normal  14517  12233  18810  22990  13422   8167   4810   2088   1340      5      0\n"
)
FREE_IN_HUGE_BLOCKS = 3 * 4 * 2**20 + 5 * 2 * 2**20


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    """Fake THP setting, huge page size and free lists; returns a function to set them."""

    def setup(mode: str = "always [madvise] never", buddyinfo: str = BUDDYINFO) -> None:
        files = {"ENABLED": mode, "PAGE_SIZE": f"{HUGE_PAGE}\n", "BUDDYINFO": buddyinfo}
        for name, text in files.items():
            path = tmp_path / name
            path.write_text(text)
            monkeypatch.setattr(huge_pages, name, str(path))

    monkeypatch.setattr(huge_pages.sys, "platform", "linux")
    monkeypatch.setattr(huge_pages, "MIN_BYTES", 2**20)
    setup()
    return setup


def test_free_memory_counts_only_blocks_of_a_huge_page_or_more(kernel):
    assert huge_pages._free_bytes_in_blocks_of(HUGE_PAGE) == FREE_IN_HUGE_BLOCKS


@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_tensor_has_the_layout_asked_for_and_starts_on_a_huge_page(kernel, layout):
    like = torch.empty(512, 1024, dtype=torch.bfloat16)  # 1 MiB
    if layout == "transposed":
        like = torch.empty(1024, 512, dtype=torch.bfloat16).T
    tensor = huge_pages.empty_in_huge_pages(like)
    assert tensor is not None
    assert tensor.shape == like.shape and tensor.stride() == like.stride()
    assert tensor.dtype == like.dtype and tensor.device.type == "cpu"
    assert tensor.data_ptr() % HUGE_PAGE == 0
    values = torch.randn(tensor.shape).to(tensor.dtype)
    tensor.copy_(values)
    assert torch.equal(tensor, values)


@pytest.mark.parametrize(
    "mode", ["[always] madvise never", "always madvise [never]", "[always] never"]
)
def test_not_used_unless_thp_is_in_madvise_mode(kernel, mode):
    """In "always" mode torch's own memory already gets huge pages; in "never" none can."""
    kernel(mode=mode)
    assert huge_pages.empty_in_huge_pages(torch.empty(2**20)) is None


def test_not_used_without_free_huge_blocks_for_twice_the_request(kernel):
    """Asking for more would make the kernel compact memory inside the page fault."""
    fits = torch.empty(FREE_IN_HUGE_BLOCKS // 2 // 4, dtype=torch.float32)
    assert huge_pages.empty_in_huge_pages(fits) is not None
    too_big = torch.empty(FREE_IN_HUGE_BLOCKS // 2 // 4 + 1024, dtype=torch.float32)
    assert huge_pages.empty_in_huge_pages(too_big) is None


def test_not_used_for_small_tensors_elsewhere_or_without_the_kernel_files(kernel, tmp_path):
    assert huge_pages.empty_in_huge_pages(torch.empty(1000)) is None  # under MIN_BYTES
    assert huge_pages.empty_in_huge_pages(torch.empty(2**20, device="meta")) is None
    huge_pages.ENABLED = str(tmp_path / "missing")
    assert huge_pages.empty_in_huge_pages(torch.empty(2**20)) is None


def test_not_used_on_other_systems(kernel, monkeypatch):
    monkeypatch.setattr(huge_pages.sys, "platform", "darwin")
    assert huge_pages.empty_in_huge_pages(torch.empty(2**20)) is None


@pytest.mark.skipif(sys.platform != "linux", reason="madvise(MADV_HUGEPAGE) is Linux's")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_load_in_huge_pages_gives_the_same_weights(dtype, kernel, tmp_path, monkeypatch):
    """W_E and W_U (processed: folded, centred, row-major in float32) are written into the
    huge-page memory, block by block, with the bits of a load into torch's memory."""
    path = gemma_checkpoint(tmp_path / "checkpoint")
    monkeypatch.setattr(vocab_chunks, "_BLOCK_BYTES", BLOCK_ROWS * 64 * 4)
    monkeypatch.setattr(huge_pages, "MIN_BYTES", 0)
    used: list[str] = []
    original = huge_pages.empty_in_huge_pages

    def recorded(like):
        tensor = original(like)
        used.append("huge" if tensor is not None else "torch")
        return tensor

    monkeypatch.setattr(huge_pages, "empty_in_huge_pages", recorded)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny configs differ from official; no tokenizer
        huge = HookedTransformer.from_pretrained(str(path), dtype=dtype)
        assert used == ["huge", "huge"]  # W_E, then W_U
        kernel(mode="[always] madvise never")
        plain = HookedTransformer.from_pretrained(str(path), dtype=dtype)
    assert used[2:] == ["torch", "torch"]
    assert huge.W_E.data_ptr() % HUGE_PAGE == 0 and huge.W_U.data_ptr() % HUGE_PAGE == 0
    expected = plain.state_dict()
    for key, value in huge.state_dict().items():
        assert value.stride() == expected[key].stride(), key
        assert torch.equal(value, expected[key]), key
