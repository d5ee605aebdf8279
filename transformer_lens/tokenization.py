"""Tokenizer glue: attach a Hugging Face tokenizer and turn text into token tensors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Int
from torch import Tensor

if TYPE_CHECKING:
    from transformer_lens.HookedTransformer import HookedTransformer


def attach_tokenizer(model: HookedTransformer, tokenizer: Any, default_padding_side: str) -> None:
    if default_padding_side not in ("left", "right"):
        raise ValueError(f"padding side must be 'left' or 'right', got {default_padding_side!r}")
    if tokenizer.eos_token is None:
        tokenizer.eos_token = "<|endoftext|>"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.bos_token is None:
        tokenizer.bos_token = tokenizer.eos_token
    tokenizer.padding_side = default_padding_side
    model.tokenizer = tokenizer
    model.default_padding_side = default_padding_side
    model.cfg.tokenizer_prepends_bos = len(tokenizer.encode("")) > 0
    if model.cfg.d_vocab == -1:
        model.cfg.d_vocab = max(tokenizer.vocab.values()) + 1
        if model.cfg.d_vocab_out == -1:
            model.cfg.d_vocab_out = model.cfg.d_vocab


def to_tokens(
    model: HookedTransformer,
    text: str | list[str],
    prepend_bos: bool | None,
    padding_side: str | None,
    truncate: bool = True,
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """Tokens and attention mask. BOS is added exactly once when asked for: never a second
    one when the tokenizer adds it itself or the text already starts with it."""
    tokenizer = model.tokenizer
    if tokenizer is None:
        raise ValueError("This model has no tokenizer; pass token ids instead of text")
    prepend_bos = model.cfg.default_prepend_bos if prepend_bos is None else prepend_bos
    side = model.default_padding_side if padding_side is None else padding_side
    texts = [text] if isinstance(text, str) else list(text)
    rows = [_encode(tokenizer, t, prepend_bos) for t in texts]
    if truncate:
        rows = [row[: model.cfg.n_ctx] for row in rows]
    length = max(len(row) for row in rows)
    tokens = torch.full((len(rows), length), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(length - len(row), length) if side == "left" else slice(0, len(row))
        tokens[i, span] = torch.tensor(row, dtype=torch.long)
        mask[i, span] = 1
    return tokens, mask


def _encode(tokenizer: Any, text: str, prepend_bos: bool) -> list[int]:
    ids = list(tokenizer.encode(text, add_special_tokens=False))
    bos = tokenizer.bos_token_id
    if prepend_bos and bos is not None and (not ids or ids[0] != bos):
        ids = [bos, *ids]
    return ids
