"""Vocabulary blocks loaded on several threads: the shares, torch's thread count around them,
errors, and a processed load that gives the same bits on one thread as on several."""

import threading
import time
import warnings

import pytest
import torch

from tests.unit.pretrained.streaming.test_vocab_blocks import (
    BLOCK_ROWS,
    gemma_checkpoint,
    gpt2_checkpoint,
)
from transformer_lens import HookedTransformer
from transformer_lens.pretrained.streaming import block_threads, vocab_blocks


@pytest.mark.parametrize(("length", "count"), [(10, 3), (7, 7), (3, 8), (1, 2), (500, 2)])
def test_shares_are_contiguous_cover_everything_and_are_near_equal(length, count):
    items = list(range(length))
    shares = block_threads.shares(items, count)
    assert len(shares) == min(count, length)
    assert [item for share in shares for item in share] == items
    assert all(share for share in shares)
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


@pytest.mark.parametrize("threads", [1, 3])
def test_every_item_is_worked_once_on_single_threaded_torch(threads, torch_threads):
    torch.set_num_threads(threads)
    seen: list[int] = []
    torch_threads_inside: set[int] = set()
    lock = threading.Lock()
    together = threading.Barrier(threads, timeout=10)  # breaks unless all shares run at once

    def work(share):
        together.wait()
        with lock:
            seen.extend(share)
            torch_threads_inside.add(torch.get_num_threads())

    block_threads.for_each_share(work, list(range(20)))
    assert sorted(seen) == list(range(20))
    # with one thread the work runs inline, under the caller's setting (also 1 here)
    assert torch_threads_inside == {1}
    assert torch.get_num_threads() == threads  # restored


def test_an_error_in_a_share_is_raised_after_every_share_stopped(torch_threads):
    torch.set_num_threads(2)
    finished: list[int] = []

    def work(share):
        if share[0] == 0:
            raise ValueError("bad block")
        time.sleep(0.05)  # the other share is still running when the first one fails
        finished.append(share[0])

    with pytest.raises(ValueError, match="bad block"):
        block_threads.for_each_share(work, [0, 1])
    assert finished == [1]
    assert torch.get_num_threads() == 2


def test_the_file_is_mapped_once_when_threads_read_it_together(tmp_path, monkeypatch):
    """The mapping is made on first use; threads starting together must share one."""
    import mmap

    from safetensors.torch import save_file

    from transformer_lens.pretrained.streaming import safetensors_reader

    path = tmp_path / "weights.safetensors"
    save_file({"matrix": torch.arange(64.0).reshape(8, 8)}, str(path))
    made = []
    real_mmap = mmap.mmap

    def slow_mmap(*args, **kwargs):  # widens the window in which a second mapping could start
        made.append(1)
        time.sleep(0.05)
        return real_mmap(*args, **kwargs)

    monkeypatch.setattr(safetensors_reader.mmap, "mmap", slow_mmap)
    file = safetensors_reader.SafetensorsFile(str(path))
    start = threading.Barrier(4)
    rows = {}

    def read(index):
        start.wait()
        rows[index] = file.get_rows("matrix", index, index + 1)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert len(made) == 1
        for index, row in rows.items():
            assert torch.equal(row[0], torch.arange(8.0) + 8 * index)
    finally:
        rows.clear()  # the views go before the mapping does
        file.close()


@pytest.mark.parametrize("make_checkpoint", [gemma_checkpoint, gpt2_checkpoint])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_loading_on_several_threads_gives_the_bits_of_one(
    make_checkpoint, dtype, tmp_path, monkeypatch, torch_threads
):
    """Gemma: the scaled W_E written in place, the mean of W_U summed on W_E's pass, the
    folded, centred and transposed W_U; GPT-2: b_U folded and centred beside W_U."""
    path = make_checkpoint(tmp_path / "checkpoint")
    monkeypatch.setattr(vocab_blocks, "_BLOCK_BYTES", BLOCK_ROWS * 64 * 4)
    loaded = {}
    for threads in (1, 3):
        torch.set_num_threads(threads)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tiny configs differ from official; no tokenizer
            loaded[threads] = HookedTransformer.from_pretrained(str(path), dtype=dtype)
    one, several = loaded[1].state_dict(), loaded[3].state_dict()
    assert one.keys() == several.keys()
    for key, value in one.items():
        assert torch.equal(value, several[key]), key
