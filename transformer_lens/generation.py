"""Text generation: a decoding loop over token ids, with or without the key/value cache.

The loop always feeds TOKENS to the model. (Classic TransformerLens fed embeddings from
v2.13 on, so hook_tokens and hook_embed never fired and left-padding masks were unused.)
Every hook fires as in a plain forward, and each row of a left-padded batch generates
what its prompt generates alone: the padding mask goes with every step, and positions
count from each row's first real token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm import tqdm

from transformer_lens import tokenization, utils
from transformer_lens._text_methods import TextModel, tokens_and_mask
from transformer_lens.past_key_value_caching import HookedTransformerKeyValueCache

Tokens = Int[Tensor, "batch pos"]


@runtime_checkable
class GenerationModel(TextModel, Protocol):
    """What generation uses of a HookedTransformer: its text side (`TextModel`), its
    forward, and the step from the final residual to logits."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The forward pass."""
        ...

    def logits_from_residual(
        self, residual: Float[Tensor, "batch pos d_model"]
    ) -> Float[Tensor, "batch pos d_vocab_out"]:
        """ln_final, the unembedding and the logit soft cap."""
        ...


RETURN_TYPES = ("input", "str", "tokens")


class Prompt(NamedTuple):
    """A prompt ready for generation: tokens [batch, pos], their mask [batch, pos], and the
    kind of input it came from ("str" or "tokens")."""

    tokens: Tokens
    mask: Tokens  # 1 = real token, 0 = left padding
    kind: str  # what return_type="input" gives back: "str" or "tokens"


@dataclass(frozen=True)
class Sampler:
    """How the next token is chosen from the last position's logits."""

    do_sample: bool
    top_k: int | None
    top_p: float | None
    temperature: float
    freq_penalty: float

    def __call__(
        self, logits: Float[Tensor, "batch d_vocab"], tokens: Tokens, mask: Tokens
    ) -> Int[Tensor, " batch"]:
        # Sampling in float32: bf16/fp16 logits are too coarse for softmax and cumsum.
        logits = logits.float()
        if not self.do_sample or self.temperature == 0.0:
            return logits.argmax(dim=-1)
        if self.freq_penalty != 0.0:
            # sample_logits would count padding too; fold in the count of real tokens only.
            # (x - T p c) / T = x / T - p c, which is what sample_logits computes.
            logits = logits - self.temperature * self.freq_penalty * _counts(tokens, mask, logits)
        return utils.sample_logits(
            logits, top_k=self.top_k, top_p=self.top_p, temperature=self.temperature
        )


def _counts(
    tokens: Tokens, mask: Tokens, logits: Float[Tensor, "batch d_vocab"]
) -> Float[Tensor, "batch d_vocab"]:
    counts = torch.zeros_like(logits)
    return counts.scatter_add_(1, tokens, mask.to(counts.dtype))


def generate(
    model: GenerationModel,
    input: Any = "",
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
) -> str | list[str] | Tokens:
    """See HookedTransformer.generate. The forward passes run under torch.inference_mode.
    Without a tokenizer, token ids in and token ids out work; with no eos id known (no
    tokenizer, no eos_token_id) nothing ever stops a row."""
    if return_type not in RETURN_TYPES:
        raise ValueError(f"return_type must be one of {RETURN_TYPES}, got {return_type!r}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    prompt = prepare_prompt(model, input, prepend_bos, padding_side)
    output = prompt.kind if return_type == "input" else return_type
    if output == "str":
        tokenization.require_tokenizer(model.tokenizer, 'return_type="str"')
    if prompt.tokens.shape[1] + max_new_tokens > model.cfg.n_ctx:
        raise ValueError(
            f"{prompt.tokens.shape[1]} prompt + {max_new_tokens} new tokens exceed "
            f"n_ctx={model.cfg.n_ctx}"
        )
    eos_ids = _eos_ids(model, eos_token_id) if stop_at_eos else []
    sampler = Sampler(do_sample, top_k, top_p, temperature, freq_penalty)
    with torch.inference_mode():
        tokens = decode_loop(
            model, prompt, max_new_tokens, eos_ids, sampler, use_past_kv_cache, verbose
        )
    # Outside inference mode, a clone is an ordinary tensor: the caller may run the model
    # on it with autograd on (an inference tensor would refuse to be saved for backward).
    tokens = tokens.clone()
    return tokens if output == "tokens" else _decoded(model, tokens)


def _decoded(model: GenerationModel, tokens: Tokens) -> str | list[str]:
    """The text of each row, special tokens (BOS, padding, eos) left out; a str for one row."""
    texts = model.tokenizer.batch_decode(tokens, skip_special_tokens=True)
    return texts[0] if len(texts) == 1 else texts


def prepare_prompt(
    model: GenerationModel, input: Any, prepend_bos: bool | None, padding_side: str | None
) -> Prompt:
    """Left-padded tokens and their mask, on the model's device."""
    device = model.cfg.device
    if isinstance(input, str | list | tuple):
        texts = input if isinstance(input, str) else list(input)
        tokens, mask = tokens_and_mask(model, texts, prepend_bos, padding_side or "left")
        if padding_side == "right" and not bool(mask.all()):
            raise ValueError(
                "generate appends new tokens at the end of each row, so a batch of texts of "
                'different lengths must be left-padded; use padding_side="left" (the default)'
            )
        return Prompt(tokens.to(device), mask.to(device), "str")
    if not isinstance(input, Tensor):
        raise TypeError(f"generate takes a str, a list of str or token ids; got {type(input)}")
    if input.is_floating_point():
        raise NotImplementedError(
            "generate runs the model on token ids, so that hook_tokens/hook_embed fire and "
            "padding masks apply; embeddings input is not supported. Pass text or token ids."
        )
    tokens = (input[None] if input.ndim == 1 else input).to(device).long()
    if tokens.ndim != 2:
        raise ValueError(f"Token ids must be [batch, pos] or [pos], got {tuple(input.shape)}")
    prepend_bos = model.cfg.default_prepend_bos if prepend_bos is None else prepend_bos
    return Prompt(tokens, _left_padding_mask(model, tokens, prepend_bos), "tokens")


def _left_padding_mask(model: GenerationModel, tokens: Tokens, prepend_bos: bool) -> Tokens:
    """Token ids carry no mask: rows of a batch that start with the pad token are taken as
    left-padded (a BOS that shares the pad id is kept when prepend_bos). A single row, or a
    model without a tokenizer, has no padding."""
    tokenizer = model.tokenizer
    pad = None if tokenizer is None else tokenizer.pad_token_id
    if tokens.shape[0] == 1 or pad is None or not bool((tokens[:, 0] == pad).any()):
        return torch.ones_like(tokens)
    return utils.get_attention_mask(tokenizer, tokens, prepend_bos).to(tokens.device)


def _eos_ids(model: GenerationModel, eos_token_id: int | list[int] | None) -> list[int]:
    if eos_token_id is None:
        tokenizer = model.tokenizer
        eos = None if tokenizer is None else tokenizer.eos_token_id
        return [] if eos is None else [int(eos)]
    ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    if not ids or not all(isinstance(i, int) for i in ids):
        raise ValueError(f"eos_token_id must be an int or a non-empty list of ints; got {ids}")
    return ids


def decode_loop(
    model: GenerationModel,
    prompt: Prompt,
    max_new_tokens: int,
    eos_ids: list[int],
    sampler: Sampler,
    use_past_kv_cache: bool,
    verbose: bool,
) -> Tokens:
    """Append up to max_new_tokens tokens to each row; a row that has produced an eos id
    gets eos_ids[0] from then on, and the loop ends once every row has."""
    tokens, mask = prompt.tokens, prompt.mask
    batch, device = tokens.shape[0], tokens.device
    cache = (
        HookedTransformerKeyValueCache.init_cache(model.cfg, device, batch)
        if use_past_kv_cache
        else None
    )
    padded = not bool(mask.all())
    n_layers = model.cfg.n_layers
    eos = torch.tensor(eos_ids, dtype=tokens.dtype, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    step_tokens, step_mask = tokens, mask
    for _ in tqdm(range(max_new_tokens), disable=not verbose):
        # Only the last position's logits are needed: with a large vocabulary the
        # unembedding of a whole prompt would cost more than the blocks.
        if cache is not None:
            residual = model(
                step_tokens, attention_mask=step_mask, past_kv_cache=cache, stop_at_layer=n_layers
            )
        else:
            residual = model(
                tokens, attention_mask=mask if padded else None, stop_at_layer=n_layers
            )
        logits = model.logits_from_residual(residual[:, -1:])
        next_tokens = sampler(logits[:, -1], tokens, mask)
        if eos_ids:
            next_tokens = torch.where(finished, eos[0], next_tokens)
            finished |= torch.isin(next_tokens, eos)
        tokens = torch.cat([tokens, next_tokens[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones_like(next_tokens)[:, None]], dim=1)
        step_tokens, step_mask = next_tokens[:, None], mask[:, -1:]
        if eos_ids and bool(finished.all()):
            break
    return tokens
