"""The tokenizer methods of HookedTransformer as functions of the model: tokenizer, tokens
<-> text. The work is done in `tokenization`; HookedTransformer keeps the classic method
names and signatures and delegates here (generate goes to `generation`)."""

from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
from jaxtyping import Int
from torch import Tensor

from transformer_lens import tokenization
from transformer_lens.HookedTransformerConfig import HookedTransformerConfig

TextOrTokens = str | list[str] | Int[Tensor, "batch pos"] | Int[Tensor, " pos"]


@runtime_checkable
class TextModel(Protocol):
    """What these functions read of a HookedTransformer."""

    cfg: HookedTransformerConfig
    tokenizer: Any
    default_padding_side: str

    def to_single_token(self, string: str) -> int:
        """The id of a string that is exactly one token."""
        ...


def set_tokenizer(model: TextModel, tokenizer: Any, default_padding_side: str) -> None:
    """See HookedTransformer.set_tokenizer."""
    model.tokenizer = tokenization.prepare_tokenizer(tokenizer, default_padding_side)
    model.default_padding_side = default_padding_side
    model.cfg.tokenizer_prepends_bos = tokenization.prepends_bos(tokenizer)
    if model.cfg.d_vocab == -1:
        model.cfg.d_vocab = tokenization.vocab_size(tokenizer)
        if model.cfg.d_vocab_out == -1:
            model.cfg.d_vocab_out = model.cfg.d_vocab


def tokenize_for_forward(
    model: TextModel, text: str | list[str], prepend_bos: bool | None, padding_side: str | None
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"] | None]:
    """See HookedTransformer.tokenize_for_forward."""
    tokens, mask = tokens_and_mask(model, text, prepend_bos, padding_side)
    return tokens, (mask if not bool(mask.all()) else None)


def tokens_and_mask(
    model: TextModel,
    text: str | list[str],
    prepend_bos: bool | None,
    padding_side: str | None,
    truncate: bool = True,
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """Tokens and mask (1 = real) on the CPU, with the model's defaults filled in."""
    tokenizer = tokenization.require_tokenizer(model.tokenizer, "Text input")
    return tokenization.to_tokens(
        tokenizer,
        text,
        model.cfg.default_prepend_bos if prepend_bos is None else prepend_bos,
        model.default_padding_side if padding_side is None else padding_side,
        model.cfg.n_ctx if truncate else None,
    )


def to_tokens(
    model: TextModel,
    input: str | list[str],
    prepend_bos: bool | None,
    padding_side: str | None,
    move_to_device: bool,
    truncate: bool,
) -> Int[Tensor, "batch pos"]:
    """See HookedTransformer.to_tokens."""
    tokens, _ = tokens_and_mask(model, input, prepend_bos, padding_side, truncate)
    return tokens.to(model.cfg.device) if move_to_device and model.cfg.device else tokens


def to_string(
    model: TextModel,
    tokens: Int[Tensor, "*shape"] | np.ndarray | list[int] | list[list[int]] | int,
) -> str | list[str]:
    """See HookedTransformer.to_string."""
    tokenizer = tokenization.require_tokenizer(model.tokenizer, "to_string")
    return tokenization.to_string(tokenizer, tokens)


def to_str_tokens(
    model: TextModel,
    input: str | list[str] | list[int] | Int[Tensor, "*shape"] | np.ndarray,
    prepend_bos: bool | None,
    padding_side: str | None,
) -> list[str] | list[list[str]]:
    """See HookedTransformer.to_str_tokens."""
    tokenizer = tokenization.require_tokenizer(model.tokenizer, "to_str_tokens")
    if isinstance(input, str):
        return _str_tokens_of_text(model, input, prepend_bos, padding_side)
    if isinstance(input, list) and input and all(isinstance(x, str) for x in input):
        texts = cast(list[str], input)
        return [_str_tokens_of_text(model, text, prepend_bos, padding_side) for text in texts]
    return tokenization.str_tokens(tokenizer, cast(tokenization.TokenIds, input))


def _str_tokens_of_text(
    model: TextModel, text: str, prepend_bos: bool | None, padding_side: str | None
) -> list[str]:
    tokens, _ = tokens_and_mask(model, text, prepend_bos, padding_side)
    return tokenization.str_tokens(model.tokenizer, tokens[0])


def to_single_token(model: TextModel, string: str) -> int:
    """See HookedTransformer.to_single_token."""
    tokenizer = tokenization.require_tokenizer(model.tokenizer, "to_single_token")
    return tokenization.single_token(tokenizer, string)


def to_single_str_token(model: TextModel, int_token: int | Int[Tensor, ""]) -> str:
    """See HookedTransformer.to_single_str_token."""
    if isinstance(int_token, Tensor) and int_token.numel() == 1:
        int_token = int(int_token.item())
    if isinstance(int_token, bool) or not isinstance(int_token, int | np.integer):
        raise TypeError(f"to_single_str_token takes an int, got {type(int_token).__name__}")
    tokenizer = tokenization.require_tokenizer(model.tokenizer, "to_single_str_token")
    return tokenization.str_tokens(tokenizer, [int(int_token)])[0]


def get_token_position(
    model: TextModel,
    single_token: str | int | Int[Tensor, ""],
    input: str | Int[Tensor, "batch pos"] | Int[Tensor, " pos"],
    mode: str,
    prepend_bos: bool | None,
    padding_side: str | None,
) -> int:
    """See HookedTransformer.get_token_position."""
    if isinstance(input, str):
        tokens, _ = tokens_and_mask(model, input, prepend_bos, padding_side)
    else:
        tokens = input if input.ndim == 2 else input[None]
    if isinstance(single_token, str):
        single_token = model.to_single_token(single_token)
    elif isinstance(single_token, Tensor):
        single_token = int(single_token.item())
    return tokenization.token_position(tokens, single_token, mode)
