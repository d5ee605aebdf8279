"""Dataset helpers of `transformer_lens.utils`: Hugging Face `datasets` to fixed-length
token rows, and the small text datasets classic TransformerLens named.

`datasets` is optional; only get_dataset imports it (the other helpers call the methods
of the dataset they are given)."""

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from transformer_lens._utils_optional import import_optional

DATASET_ALIASES = {
    "openwebtext": "stas/openwebtext-10k",
    "owt": "stas/openwebtext-10k",
    "pile": "NeelNanda/pile-10k",
    "c4": "NeelNanda/c4-10k",
    "code": "NeelNanda/code-10k",
    "python": "NeelNanda/code-10k",
    "c4_code": "NeelNanda/c4-code-20k",
    "c4-code": "NeelNanda/c4-code-20k",
    "wiki": "NeelNanda/wiki-10k",
}
"""get_dataset's short names -> Hugging Face Hub dataset repos of about 10k texts each."""


def keep_single_column(dataset: Any, col_name: str) -> Any:
    """`dataset` (a `datasets.Dataset` or `IterableDataset`) with only the column col_name."""
    columns = dataset.column_names
    if columns is not None and col_name not in columns:
        raise ValueError(f"The dataset has no column {col_name!r}; its columns are {columns}")
    return dataset.select_columns([col_name])


def tokenize_and_concatenate(
    dataset: Any,
    tokenizer: Any,
    streaming: bool = False,
    max_length: int = 1024,
    column_name: str = "text",
    add_bos_token: bool = True,
    num_proc: int = 10,
) -> Any:
    """Tokenize the texts of `dataset[column_name]` into rows of max_length tokens, with one
    column "tokens" in torch format.

    Within each map batch (1000 texts), the texts are tokenized without special tokens
    and joined into one stream with EOS between them; the stream is cut into rows of
    max_length tokens (max_length - 1 after a BOS when add_bos_token) and the incomplete
    last row is dropped. A batch shorter than one row gives a single row padded with the
    pad token (EOS when there is none). Rows therefore span text boundaries, which keeps
    every position equally likely to start a text.

    The tokenizer is not modified. `num_proc` worker processes tokenize a `Dataset`;
    with streaming, or for an `IterableDataset`, tokenization runs lazily while iterating.
    """
    if tokenizer.eos_token_id is None:
        raise ValueError("tokenize_and_concatenate needs a tokenizer with an EOS token")
    if add_bos_token and tokenizer.bos_token_id is None:
        raise ValueError("add_bos_token=True needs a tokenizer with a BOS token")
    row_length = max_length - 1 if add_bos_token else max_length
    if row_length < 1:
        raise ValueError(f"max_length {max_length} leaves no room for text tokens")
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    tokenize = partial(
        _tokenize_batch,
        tokenizer=tokenizer,
        column_name=column_name,
        row_length=row_length,
        bos_id=tokenizer.bos_token_id if add_bos_token else None,
        pad_id=pad_id,
    )
    dataset = keep_single_column(dataset, column_name)
    # IterableDataset.map takes no num_proc and has no set_format (classic passed both).
    if streaming or not hasattr(dataset, "set_format"):
        return dataset.map(tokenize, batched=True, remove_columns=[column_name]).with_format(
            "torch"
        )
    tokenized = dataset.map(tokenize, batched=True, num_proc=num_proc, remove_columns=[column_name])
    tokenized.set_format(type="torch", columns=["tokens"])
    return tokenized


def _tokenize_batch(
    examples: Any,
    tokenizer: Any,
    column_name: str,
    row_length: int,
    bos_id: int | None,
    pad_id: int,
) -> dict[str, np.ndarray]:
    """One map batch of texts -> {"tokens": [rows, max_length] int64}."""
    # verbose=False: the texts are longer than the model context on purpose.
    token_lists = tokenizer(examples[column_name], add_special_tokens=False, verbose=False)
    stream: list[int] = []
    for i, ids in enumerate(token_lists["input_ids"]):
        if i > 0:
            stream.append(tokenizer.eos_token_id)
        stream.extend(ids)
    tokens = np.asarray(stream, dtype=np.int64)
    if 0 < len(tokens) < row_length:
        tokens = np.concatenate([tokens, np.full(row_length - len(tokens), pad_id)])
    n_rows = len(tokens) // row_length
    rows = tokens[: n_rows * row_length].reshape(n_rows, row_length)
    if bos_id is not None:
        rows = np.concatenate([np.full((n_rows, 1), bos_id, dtype=np.int64), rows], axis=1)
    return {"tokens": rows}


def get_dataset(dataset_name: str, **kwargs: Any) -> Any:
    """The train split of a small text dataset, each text in a "text" column.

    `dataset_name` is a short name, one of DATASET_ALIASES (e.g. "pile", "c4", "code",
    "wiki", "openwebtext"), downloaded from the Hugging Face Hub; keyword arguments go to
    `datasets.load_dataset` (e.g. data_dir, cache_dir). A local directory written by
    `Dataset.save_to_disk` is loaded from disk instead, without the network.
    """
    datasets = import_optional("datasets", "get_dataset")

    if Path(dataset_name).is_dir():
        return datasets.load_from_disk(dataset_name, **kwargs)
    if dataset_name not in DATASET_ALIASES:
        raise ValueError(
            f"Dataset {dataset_name!r} is not supported; use one of {sorted(DATASET_ALIASES)} "
            "or a directory saved with Dataset.save_to_disk"
        )
    repo = DATASET_ALIASES[dataset_name]
    try:
        return datasets.load_dataset(repo, split="train", **kwargs)
    except OSError as error:  # ConnectionError when the hub is unreachable
        raise OSError(
            f"Could not load {repo!r} from the Hugging Face Hub: {error}. Offline, pass local "
            f"data instead: get_dataset('/path/to/dir') for a directory saved with "
            f"Dataset.save_to_disk, or build one with datasets.Dataset.from_dict("
            f"{{'text': [...]}}) or datasets.load_dataset('text', data_files=...)"
        ) from error
