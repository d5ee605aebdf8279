"""tokenize_and_concatenate, keep_single_column and get_dataset on in-memory datasets and
locally trained tokenizers; the hub is never called (load_dataset is monkeypatched)."""

import sys

import datasets
import pytest
import torch

from tests.tokenizers import SENTENCES, load_tokenizer, save_tokenizers
from transformer_lens import utils


@pytest.fixture(scope="module")
def tokenizer_dirs(tmp_path_factory):
    return save_tokenizers(tmp_path_factory.mktemp("tokenizers"))


@pytest.fixture
def plain(tokenizer_dirs):
    return load_tokenizer(tokenizer_dirs["plain"])


@pytest.fixture
def bos_adding(tokenizer_dirs):
    return load_tokenizer(tokenizer_dirs["bos_adding"])


@pytest.fixture(autouse=True)
def quiet_datasets():
    datasets.disable_progress_bars()
    yield
    datasets.enable_progress_bars()


def texts_dataset(texts=SENTENCES[:8]) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"text": list(texts), "id": list(range(len(texts)))})


def stream_of(tokenizer, texts) -> list[int]:
    """The texts' tokens with EOS between them, as the tokenizer alone gives them."""
    stream: list[int] = []
    for i, text in enumerate(texts):
        if i:
            stream.append(tokenizer.eos_token_id)
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
    return stream


def rows_of(tokenized) -> list[list[int]]:
    return [row["tokens"].tolist() for row in tokenized]


def test_rows_are_bos_then_consecutive_slices_of_the_stream(plain):
    stream = stream_of(plain, SENTENCES[:8])
    out = utils.tokenize_and_concatenate(texts_dataset(), plain, max_length=8, num_proc=1)
    expected = [[plain.bos_token_id, *stream[i : i + 7]] for i in range(0, len(stream) - 6, 7)]
    assert len(expected) == len(stream) // 7 > 2 and len(stream) % 7 != 0
    assert rows_of(out) == expected
    assert out.column_names == ["tokens"]
    assert isinstance(out[0]["tokens"], torch.Tensor)


def test_tokenizer_is_left_unchanged(plain):
    size, pad = len(plain), plain.pad_token
    utils.tokenize_and_concatenate(texts_dataset(), plain, max_length=8, num_proc=1)
    assert (len(plain), plain.pad_token) == (size, pad)


def test_a_bos_adding_tokenizer_gives_bos_only_at_row_starts(bos_adding):
    stream = stream_of(bos_adding, SENTENCES[:8])
    out = utils.tokenize_and_concatenate(texts_dataset(), bos_adding, max_length=6, num_proc=1)
    rows = rows_of(out)
    assert rows == [
        [bos_adding.bos_token_id, *stream[i : i + 5]] for i in range(0, 5 * len(rows), 5)
    ]
    assert all(bos_adding.bos_token_id not in row[1:] for row in rows)


def test_without_bos_rows_have_max_length_text_tokens(plain):
    stream = stream_of(plain, SENTENCES[:8])
    out = utils.tokenize_and_concatenate(
        texts_dataset(), plain, max_length=5, add_bos_token=False, num_proc=1
    )
    assert rows_of(out) == [stream[i : i + 5] for i in range(0, len(stream) - 4, 5)]


def test_short_text_gives_one_padded_row(plain, bos_adding):
    short = texts_dataset(["hello"])
    hello = plain("hello", add_special_tokens=False)["input_ids"]
    out = utils.tokenize_and_concatenate(short, plain, max_length=6, num_proc=1)
    assert rows_of(out) == [[plain.bos_token_id, *hello, *[plain.eos_token_id] * (5 - len(hello))]]
    hello = bos_adding("hello", add_special_tokens=False)["input_ids"]
    out = utils.tokenize_and_concatenate(short, bos_adding, max_length=6, num_proc=1)
    pads = [bos_adding.pad_token_id] * (5 - len(hello))
    assert rows_of(out) == [[bos_adding.bos_token_id, *hello, *pads]]


def bos_rows(tokenizer, texts, row_length) -> list[list[int]]:
    stream = stream_of(tokenizer, texts)
    starts = range(0, len(stream) - row_length + 1, row_length)
    return [[tokenizer.bos_token_id, *stream[i : i + row_length]] for i in starts]


def test_worker_processes_each_concatenate_their_own_shard(plain):
    # Each of the 2 processes maps a contiguous half of the texts as its own batch.
    dataset = datasets.Dataset.from_dict({"body": SENTENCES[:8]})
    out = utils.tokenize_and_concatenate(
        dataset, plain, max_length=8, column_name="body", num_proc=2
    )
    expected = bos_rows(plain, SENTENCES[:4], 7) + bos_rows(plain, SENTENCES[4:8], 7)
    assert rows_of(out) == expected


def test_streaming_iterable_dataset_gives_the_same_rows(plain):
    expected = rows_of(
        utils.tokenize_and_concatenate(texts_dataset(), plain, max_length=8, num_proc=1)
    )
    iterable = texts_dataset().to_iterable_dataset()
    out = utils.tokenize_and_concatenate(iterable, plain, streaming=True, max_length=8)
    rows = list(out)
    assert [row["tokens"].tolist() for row in rows] == expected
    assert set(rows[0]) == {"tokens"}


def test_max_length_must_leave_room_for_text(plain):
    with pytest.raises(ValueError, match="max_length 1"):
        utils.tokenize_and_concatenate(texts_dataset(), plain, max_length=1)


def test_keep_single_column():
    kept = utils.keep_single_column(texts_dataset(), "id")
    assert kept.column_names == ["id"] and kept["id"][:3] == [0, 1, 2]
    with pytest.raises(ValueError, match="no column 'body'"):
        utils.keep_single_column(texts_dataset(), "body")


@pytest.fixture
def load_calls(monkeypatch):
    calls = []

    def load_dataset(path, split=None, **kwargs):
        calls.append((path, split, kwargs))
        return texts_dataset()

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


@pytest.mark.parametrize(
    ("name", "repo"), [("pile", "NeelNanda/pile-10k"), ("owt", "stas/openwebtext-10k")]
)
def test_get_dataset_resolves_short_names_to_the_train_split(load_calls, name, repo):
    dataset = utils.get_dataset(name, cache_dir="/tmp/x")
    assert load_calls == [(repo, "train", {"cache_dir": "/tmp/x"})]
    assert dataset["text"][:1] == SENTENCES[:1]


def test_get_dataset_rejects_unknown_names(load_calls):
    with pytest.raises(ValueError, match="not supported"):
        utils.get_dataset("imagenet")
    assert load_calls == []


def test_get_dataset_offline_says_how_to_pass_local_data(monkeypatch):
    def unreachable(path, split=None, **kwargs):
        raise ConnectionError(f"Couldn't reach {path!r} on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(OSError, match="save_to_disk") as raised:
        utils.get_dataset("c4")
    assert isinstance(raised.value.__cause__, ConnectionError)


def test_get_dataset_loads_a_saved_directory(load_calls, tmp_path):
    texts_dataset().save_to_disk(str(tmp_path / "saved"))
    dataset = utils.get_dataset(str(tmp_path / "saved"))
    assert dataset["text"][:] == SENTENCES[:8] and load_calls == []


def test_missing_datasets_names_the_extra(monkeypatch):
    # A None entry in sys.modules makes `import datasets` raise ImportError.
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError, match=r"transformer-lens\[data\]"):
        utils.get_dataset("pile")
