"""Tokenizer glue: attach a Hugging Face tokenizer, turn text into token ids and back.

BOS is handled here, never by the tokenizer: text is encoded without special tokens and
BOS is prepended once when asked for. So a tokenizer that adds BOS itself (Gemma, Llama)
and one that does not (GPT-2) give the same tokens, text that already starts with BOS
never gets a second one, and prepend_bos=False never leaves a tokenizer-added BOS.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

PADDING_SIDES = ("left", "right")
TokenIds = Tensor | np.ndarray | list[int] | list[list[int]] | int


def prepare_tokenizer(tokenizer: Any, padding_side: str) -> Any:
    """Fill in missing special tokens as classic TransformerLens does (eos defaults to
    "<|endoftext|>", pad and bos to eos) and set the default padding side; in place."""
    tokenizer.padding_side = check_padding_side(padding_side)
    if tokenizer.eos_token is None:
        tokenizer.eos_token = "<|endoftext|>"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.bos_token is None:
        tokenizer.bos_token = tokenizer.eos_token
    return tokenizer


def prepends_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer adds special tokens (BOS) by itself. Informational only:
    `encode` adds BOS itself, whatever the tokenizer does."""
    return len(tokenizer.encode("")) > 0


def vocab_size(tokenizer: Any) -> int:
    """Largest token id + 1, added tokens included."""
    return max(tokenizer.get_vocab().values()) + 1


def require_tokenizer(tokenizer: Any, purpose: str) -> Any:
    """Return `tokenizer`, or raise ValueError saying `purpose` needs one if it is None."""
    if tokenizer is None:
        raise ValueError(
            f"{purpose} needs a tokenizer, and this model has none; pass token ids instead, "
            "or call model.set_tokenizer(tokenizer)"
        )
    return tokenizer


def check_padding_side(side: str) -> str:
    """Return `side` if it is "left" or "right", else raise ValueError."""
    if side not in PADDING_SIDES:
        raise ValueError(f"padding_side must be 'left' or 'right', got {side!r}")
    return side


def to_tokens(
    tokenizer: Any,
    text: str | list[str],
    prepend_bos: bool,
    padding_side: str,
    max_length: int | None = None,
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """Tokens and attention mask (1 = real token) of a text or a batch of texts, on the CPU;
    each text is cut to its first max_length tokens when given."""
    check_padding_side(padding_side)
    rows = encode(tokenizer, _as_texts(text), prepend_bos)
    if max_length is not None:
        rows = [row[:max_length] for row in rows]
    return pad_rows(rows, tokenizer.pad_token_id, padding_side)


def _as_texts(text: Any) -> list[str]:
    if isinstance(text, str):
        return [text]
    if isinstance(text, list | tuple) and text and all(isinstance(t, str) for t in text):
        return list(text)
    raise TypeError(f"Expected a str or a non-empty list of str, got {_describe(text)}")


def encode(tokenizer: Any, texts: list[str], prepend_bos: bool) -> list[list[int]]:
    """Token ids of each text, with exactly one BOS in front when prepend_bos is set."""
    rows = tokenizer(texts, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    if not prepend_bos or bos is None:
        return [list(row) for row in rows]
    return [list(row) if row and row[0] == bos else [bos, *row] for row in rows]


def pad_rows(
    rows: list[list[int]], pad_token_id: int | None, side: str
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """Pad token-id rows to the longest on `side`: (tokens, mask) [batch, pos], mask 1 for
    real tokens; raises if every row is empty, or if padding is needed without a pad id."""
    length = max(len(row) for row in rows)
    if length == 0:
        raise ValueError("Every text encodes to zero tokens; nothing to return")
    if pad_token_id is None and any(len(row) < length for row in rows):
        raise ValueError("These texts need padding, but the tokenizer has no pad token id")
    tokens = torch.full((len(rows), length), pad_token_id or 0, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(length - len(row), length) if side == "left" else slice(0, len(row))
        tokens[i, span] = torch.tensor(row, dtype=torch.long)
        mask[i, span] = 1
    return tokens, mask


def to_string(tokenizer: Any, tokens: TokenIds) -> str | list[str]:
    """Decode token ids: a str for a single token or a [pos] sequence, a list for [batch, pos]."""
    ids = _to_id_array(tokens)
    if ids.ndim == 2:
        return [_decode(tokenizer, row.tolist()) for row in ids]
    return _decode(tokenizer, np.atleast_1d(ids).tolist())


def _decode(tokenizer: Any, ids: list[int]) -> str:
    return tokenizer.decode(ids, clean_up_tokenization_spaces=False)


def str_tokens(tokenizer: Any, tokens: TokenIds) -> list[str]:
    """Each token of a [pos] or [1, pos] sequence (or a single id) decoded on its own."""
    ids = _to_id_array(tokens)
    if ids.ndim == 2:
        if ids.shape[0] != 1:
            raise ValueError(
                f"to_str_tokens takes one sequence, [pos] or [1, pos]; got shape {ids.shape}"
            )
        ids = ids[0]
    return [_decode(tokenizer, [token]) for token in np.atleast_1d(ids).tolist()]


def _to_id_array(tokens: TokenIds) -> np.ndarray:
    if isinstance(tokens, Tensor):
        tokens = tokens.detach().cpu().numpy()
    ids = np.asarray(tokens)
    if ids.size == 0:
        return ids.astype(np.int64)
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"Expected integer token ids, got {_describe(tokens)}")
    if ids.ndim > 2:
        raise ValueError(f"Expected token ids of rank <= 2, got shape {ids.shape}")
    return ids


def single_token(tokenizer: Any, text: str) -> int:
    """The id of `text`, which must encode to exactly one token (no BOS added)."""
    if not isinstance(text, str):
        raise TypeError(f"to_single_token takes a str, got {_describe(text)}")
    (ids,) = encode(tokenizer, [text], prepend_bos=False)
    if len(ids) != 1:
        pieces = [_decode(tokenizer, [token]) for token in ids]
        raise ValueError(f"{text!r} is {len(ids)} tokens, not one: {pieces}")
    return ids[0]


def token_position(tokens: Int[Tensor, "batch pos"], token: int, mode: str) -> int:
    """First or last position of `token` in a batch-1 sequence."""
    if mode not in ("first", "last"):
        raise ValueError(f"mode must be 'first' or 'last', got {mode!r}")
    if tokens.shape[0] != 1:
        raise ValueError(
            f"Expected a single sequence, [pos] or [1, pos]; got {tuple(tokens.shape)}"
        )
    positions = (tokens[0] == token).nonzero()[:, 0]
    if len(positions) == 0:
        raise ValueError(f"Token {token} does not occur in the input {tokens[0].tolist()}")
    return int(positions[0] if mode == "first" else positions[-1])


def _describe(value: Any) -> str:
    if isinstance(value, Tensor | np.ndarray):
        return f"{type(value).__name__} of dtype {value.dtype} and shape {tuple(value.shape)}"
    if isinstance(value, list | tuple) and value:
        return f"{type(value).__name__} of {type(value[0]).__name__}"
    return type(value).__name__
