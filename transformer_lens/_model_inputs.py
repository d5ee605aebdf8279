"""Turn what a user passes to forward into checked tokens, positions and masks."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.past_key_value_caching import (
    HookedTransformerKeyValueCache,
    key_value_heads_exposed,
)


@runtime_checkable
class InputModel(Protocol):
    """What preparing a forward's inputs reads of a HookedTransformer."""

    cfg: HookedTransformerConfig
    tokenizer: Any

    def tokenize_for_forward(
        self, text: str | list[str], prepend_bos: bool | None, padding_side: str | None
    ) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"] | None]:
        """Tokens for forward, with a mask only when padding is present."""
        ...


class ModelInputs(NamedTuple):
    """A forward's checked inputs: tokens [batch, pos] (None when starting from a residual
    without tokens=), the residual [batch, pos, d_model] (only with start_at_layer), positions
    [batch or 1, pos], key_padding_mask [batch, key_pos] (True for real keys, cached ones
    included; None only when no key is padding) and attention_mask [batch, pos], the 0/1 mask
    of this forward's own positions that the loss uses (None without one)."""

    tokens: Int[Tensor, "batch pos"] | None
    residual: Float[Tensor, "batch pos d_model"] | None
    positions: Int[Tensor, "batch_or_1 pos"]
    key_padding_mask: Bool[Tensor, "batch pos"] | None
    attention_mask: Int[Tensor, "batch pos"] | None


def prepare_inputs(
    model: InputModel,
    input: Any,
    tokens: Tensor | None,
    attention_mask: Tensor | None,
    start_at_layer: int | None,
    prepend_bos: bool | None,
    padding_side: str | None,
    past_kv_cache: HookedTransformerKeyValueCache | None = None,
) -> ModelInputs:
    """Check and normalise forward's arguments (tokenizing text, building positions and
    masks, extending past_kv_cache's mask); raises a clear error for bad input."""
    residual = None
    if start_at_layer is not None:
        residual = check_residual(model, input)
        if tokens is not None:
            tokens = check_tokens(model, tokens)
            if tuple(tokens.shape) != tuple(residual.shape[:2]):
                raise ValueError(
                    f"tokens= has shape {tuple(tokens.shape)} but the residual is [batch, pos] = "
                    f"{tuple(residual.shape[:2])}"
                )
        batch, pos = residual.shape[:2]
        device = residual.device
    else:
        if isinstance(input, (str, list)):
            if model.tokenizer is None:
                raise ValueError(
                    "Text input needs a tokenizer; pass token ids or call set_tokenizer"
                )
            tokens, text_mask = model.tokenize_for_forward(input, prepend_bos, padding_side)
            attention_mask = text_mask if attention_mask is None else attention_mask
        else:
            tokens = input
        checked = check_tokens(model, tokens)
        batch, pos = checked.shape
        device = checked.device
        tokens = checked
    if past_kv_cache is not None:
        return _with_cache(
            tokens, residual, attention_mask, past_kv_cache, batch, pos, device, model
        )
    if attention_mask is None:
        positions = torch.arange(pos, device=device)[None]
        return ModelInputs(tokens, residual, positions, None, None)
    attention_mask = check_attention_mask(attention_mask, batch, pos).to(device)
    # Positions count from each row's first real token, so left padding shifts nothing.
    positions = (attention_mask.cumsum(dim=-1) - 1).clamp(min=0)
    return ModelInputs(tokens, residual, positions, attention_mask.bool(), attention_mask)


def _with_cache(
    tokens: Tensor | None,
    residual: Tensor | None,
    attention_mask: Tensor | None,
    cache: HookedTransformerKeyValueCache,
    batch: int,
    pos: int,
    device: torch.device,
    model: InputModel,
) -> ModelInputs:
    """Positions and mask of new tokens that follow the cached ones."""
    check_cache_fits(model, cache, batch)
    past = cache.length
    if past + pos > model.cfg.n_ctx:
        raise ValueError(f"{past} cached + {pos} new positions exceed n_ctx={model.cfg.n_ctx}")
    if attention_mask is None:
        attention_mask = torch.ones(batch, pos, dtype=torch.long, device=device)
    new_mask = check_attention_mask(attention_mask, batch, pos).to(device)
    full_mask = cache.append_attention_mask(new_mask)
    positions = (full_mask.cumsum(dim=-1) - 1).clamp(min=0)[:, past:]
    padding = full_mask.bool() if not bool(full_mask.all()) else None
    return ModelInputs(tokens, residual, positions, padding, new_mask)


def check_cache_fits(model: InputModel, cache: HookedTransformerKeyValueCache, batch: int) -> None:
    """Refuse a cache this forward could not extend, before anything is appended to it."""
    if len(cache) != model.cfg.n_layers:
        raise ValueError(
            f"past_kv_cache has {len(cache)} layers; expected n_layers={model.cfg.n_layers}"
        )
    expected = (batch, key_value_heads_exposed(model.cfg), model.cfg.d_head)
    for layer, entry in enumerate(cache.entries):
        keys = entry.past_keys
        got = (keys.shape[0], keys.shape[2], keys.shape[3])
        if got != expected:
            raise ValueError(
                f"past_kv_cache layer {layer} holds [batch, heads, d_head] = {got}; this forward "
                f"needs {expected}. Build the cache with HookedTransformerKeyValueCache."
                "init_cache(model.cfg, device, batch_size) after setting the attention flags."
            )
        if entry.length != cache.length:
            raise ValueError(
                f"past_kv_cache is inconsistent: layer {layer} holds {entry.length} positions "
                f"but its attention mask {cache.length}; expected the same number (a forward "
                "that used this cache stopped part-way). Build a new cache."
            )


def check_tokens(model: InputModel, tokens: Any) -> Int[Tensor, "batch pos"]:
    if not isinstance(tokens, Tensor):
        raise TypeError(f"Expected token ids as a torch.Tensor, got {type(tokens).__name__}")
    if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
        raise TypeError(f"Token ids must be an integer tensor, got dtype {tokens.dtype}")
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2:
        raise ValueError(f"Tokens must be [batch, pos] or [pos], got shape {tuple(tokens.shape)}")
    if tokens.numel() == 0:
        raise ValueError(
            f"Empty input: tokens have shape {tuple(tokens.shape)}; expected at least one "
            "sequence of at least one token"
        )
    if tokens.shape[1] > model.cfg.n_ctx:
        raise ValueError(
            f"Sequence of {tokens.shape[1]} tokens is longer than n_ctx={model.cfg.n_ctx}"
        )
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= model.cfg.d_vocab:
        raise ValueError(
            f"Token ids must lie in [0, d_vocab={model.cfg.d_vocab}); got min {low}, max {high}"
        )
    return tokens.to(model.cfg.device) if model.cfg.device is not None else tokens


def check_residual(model: InputModel, residual: Any) -> Float[Tensor, "batch pos d_model"]:
    if not isinstance(residual, Tensor) or not residual.is_floating_point():
        raise TypeError("With start_at_layer, input must be a float residual [batch, pos, d_model]")
    if residual.ndim != 3 or residual.shape[-1] != model.cfg.d_model:
        raise ValueError(
            f"With start_at_layer, input must be [batch, pos, d_model={model.cfg.d_model}], "
            f"got shape {tuple(residual.shape)}"
        )
    if residual.shape[0] == 0 or residual.shape[1] == 0:
        raise ValueError(
            f"Empty input: the residual has shape {tuple(residual.shape)}; expected at least "
            "one sequence of at least one position"
        )
    if residual.shape[1] > model.cfg.n_ctx:
        raise ValueError(
            f"Sequence of {residual.shape[1]} positions is longer than n_ctx={model.cfg.n_ctx}"
        )
    return residual


def check_attention_mask(mask: Any, batch: int, pos: int) -> Int[Tensor, "batch pos"]:
    if not isinstance(mask, Tensor):
        raise TypeError(f"attention_mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.ndim == 1:
        mask = mask[None]
    if tuple(mask.shape) != (batch, pos):
        raise ValueError(
            f"attention_mask has shape {tuple(mask.shape)} but the tokens are [batch, pos] = "
            f"{(batch, pos)}"
        )
    if mask.dtype != torch.bool:
        other = mask[(mask != 0) & (mask != 1)]
        if other.numel() > 0:
            raise ValueError(
                "attention_mask must hold only 0 (padding) and 1 (real token); got "
                f"{other.unique()[:5].tolist()}"
            )
    return mask.long()
