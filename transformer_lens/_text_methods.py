"""The text-facing methods of HookedTransformer, as a mixin: tokenizer, tokens <-> text,
and generate. The work is done in `tokenization` and `generation`; these are the public
signatures classic TransformerLens users call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy as np
from jaxtyping import Float, Int
from torch import Tensor

from transformer_lens import tokenization
from transformer_lens.HookedTransformerConfig import HookedTransformerConfig

if TYPE_CHECKING:
    from transformer_lens.HookedTransformer import HookedTransformer

TextOrTokens = str | list[str] | Int[Tensor, "batch pos"] | Int[Tensor, " pos"]


class TextMethodsMixin:
    """HookedTransformer's tokenizer methods (to_tokens, to_string, to_str_tokens, ...) and
    generate."""

    # Provided by HookedTransformer.
    cfg: HookedTransformerConfig
    tokenizer: Any
    default_padding_side: str

    def set_tokenizer(self, tokenizer: Any, default_padding_side: str = "right") -> None:
        """Attach a Hugging Face tokenizer; missing eos becomes "<|endoftext|>", missing pad
        and bos become eos. BOS is added by to_tokens, whatever the tokenizer does. d_vocab
        is taken from the tokenizer when the config leaves it at -1."""
        self.tokenizer = tokenization.prepare_tokenizer(tokenizer, default_padding_side)
        self.default_padding_side = default_padding_side
        self.cfg.tokenizer_prepends_bos = tokenization.prepends_bos(tokenizer)
        if self.cfg.d_vocab == -1:
            self.cfg.d_vocab = tokenization.vocab_size(tokenizer)
            if self.cfg.d_vocab_out == -1:
                self.cfg.d_vocab_out = self.cfg.d_vocab

    def tokenize_for_forward(
        self, text: str | list[str], prepend_bos: bool | None, padding_side: str | None
    ) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"] | None]:
        """Tokens for forward, with a mask only when padding is present."""
        tokens, mask = self._tokens_and_mask(text, prepend_bos, padding_side)
        return tokens, (mask if not bool(mask.all()) else None)

    def _tokens_and_mask(
        self,
        text: str | list[str],
        prepend_bos: bool | None,
        padding_side: str | None,
        truncate: bool = True,
    ) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
        """Tokens and mask (1 = real) on the CPU, with the model's defaults filled in."""
        tokenizer = tokenization.require_tokenizer(self.tokenizer, "Text input")
        return tokenization.to_tokens(
            tokenizer,
            text,
            self.cfg.default_prepend_bos if prepend_bos is None else prepend_bos,
            self.default_padding_side if padding_side is None else padding_side,
            self.cfg.n_ctx if truncate else None,
        )

    def to_tokens(
        self,
        input: str | list[str],
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
        move_to_device: bool = True,
        truncate: bool = True,
    ) -> Int[Tensor, "batch pos"]:
        """Token ids [batch, pos] of a text or list of texts. prepend_bos and padding_side
        default to cfg.default_prepend_bos and the model's default_padding_side; BOS is never
        doubled. truncate keeps the first n_ctx tokens of each text."""
        tokens, _ = self._tokens_and_mask(input, prepend_bos, padding_side, truncate)
        return tokens.to(self.cfg.device) if move_to_device and self.cfg.device else tokens

    def to_string(
        self, tokens: Int[Tensor, "*shape"] | np.ndarray | list[int] | list[list[int]] | int
    ) -> str | list[str]:
        """Decode token ids: a str for rank <= 1, a list of str for [batch, pos]."""
        tokenizer = tokenization.require_tokenizer(self.tokenizer, "to_string")
        return tokenization.to_string(tokenizer, tokens)

    def to_str_tokens(
        self,
        input: str | list[str] | list[int] | Int[Tensor, "*shape"] | np.ndarray,
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
    ) -> list[str] | list[list[str]]:
        """Each token as a string. A text is tokenized first (prepend_bos as in to_tokens);
        a list of texts gives one list per text; token ids may be a [pos] or [1, pos] tensor
        or array, or a list of ints."""
        tokenizer = tokenization.require_tokenizer(self.tokenizer, "to_str_tokens")
        if isinstance(input, str):
            return self._str_tokens_of_text(input, prepend_bos, padding_side)
        if isinstance(input, list) and input and all(isinstance(x, str) for x in input):
            texts = cast(list[str], input)
            return [self._str_tokens_of_text(text, prepend_bos, padding_side) for text in texts]
        return tokenization.str_tokens(tokenizer, cast(tokenization.TokenIds, input))

    def _str_tokens_of_text(
        self, text: str, prepend_bos: bool | None, padding_side: str | None
    ) -> list[str]:
        tokens, _ = self._tokens_and_mask(text, prepend_bos, padding_side)
        return tokenization.str_tokens(self.tokenizer, tokens[0])

    def to_single_token(self, string: str) -> int:
        """The id of a string that is exactly one token; ValueError otherwise."""
        tokenizer = tokenization.require_tokenizer(self.tokenizer, "to_single_token")
        return tokenization.single_token(tokenizer, string)

    def to_single_str_token(self, int_token: int | Int[Tensor, ""]) -> str:
        """The string of one token id."""
        if isinstance(int_token, Tensor) and int_token.numel() == 1:
            int_token = int(int_token.item())
        if isinstance(int_token, bool) or not isinstance(int_token, int | np.integer):
            raise TypeError(f"to_single_str_token takes an int, got {type(int_token).__name__}")
        tokenizer = tokenization.require_tokenizer(self.tokenizer, "to_single_str_token")
        return tokenization.str_tokens(tokenizer, [int(int_token)])[0]

    def get_token_position(
        self,
        single_token: str | int | Int[Tensor, ""],
        input: str | Int[Tensor, "batch pos"] | Int[Tensor, " pos"],
        mode: str = "first",
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
    ) -> int:
        """Position of the first (or last, mode="last") occurrence of a token in one text or
        sequence of ids; ValueError when it does not occur. A text is tokenized as in
        to_tokens, so with BOS prepended positions count it."""
        if isinstance(input, str):
            tokens, _ = self._tokens_and_mask(input, prepend_bos, padding_side)
        else:
            tokens = input if input.ndim == 2 else input[None]
        if isinstance(single_token, str):
            single_token = self.to_single_token(single_token)
        elif isinstance(single_token, Tensor):
            single_token = int(single_token.item())
        return tokenization.token_position(tokens, single_token, mode)

    def generate(
        self,
        input: TextOrTokens | Float[Tensor, "batch pos d_model"] = "",
        max_new_tokens: int = 10,
        stop_at_eos: bool = True,
        eos_token_id: int | list[int] | None = None,
        do_sample: bool = True,
        top_k: int | None = None,
        top_p: float | None = None,
        temperature: float = 1.0,
        freq_penalty: float = 0.0,
        use_past_kv_cache: bool = True,
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
        return_type: str = "input",
        verbose: bool = True,
    ) -> str | list[str] | Int[Tensor, "batch prompt_and_new_pos"]:
        """Continue a text, a list of texts or token ids by up to max_new_tokens tokens.

        Greedy when do_sample is False, else sampled with temperature, top_k, top_p and
        freq_penalty. With stop_at_eos, a row stops at its first eos (eos_token_id, an id
        or a list of ids, defaults to the tokenizer's) and is then padded with eos; the loop
        ends when every row has stopped. A batch of texts is left-padded. return_type "str"
        decodes (a str for a single prompt), "tokens" gives [batch, pos] ids including the
        prompt, "input" returns the kind that came in. Hooks added with `model.hooks()` fire
        at every step. Runs under torch.inference_mode; see `transformer_lens.generation`."""
        from transformer_lens.generation import generate

        return generate(
            cast("HookedTransformer", self),
            input,
            max_new_tokens=max_new_tokens,
            stop_at_eos=stop_at_eos,
            eos_token_id=eos_token_id,
            do_sample=do_sample,
            top_k=top_k,
            top_p=top_p,
            temperature=temperature,
            freq_penalty=freq_penalty,
            use_past_kv_cache=use_past_kv_cache,
            prepend_bos=prepend_bos,
            padding_side=padding_side,
            return_type=return_type,
            verbose=verbose,
        )
