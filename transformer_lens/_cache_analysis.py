"""Residual-stream decompositions and logit attributions: the work behind
`ActivationCache`'s methods of those names, as functions of the cache.

Every decomposition here sums to the residual it decomposes (see `_cache_components` for
the layer, slicing and norm conventions, and for the `Cache` these functions read).
"""

import torch
from jaxtyping import Float, Int
from torch import Tensor

from transformer_lens._cache_components import (
    Cache,
    LabelledStack,
    Stack,
    cached,
    check_mlp_input,
    has_resid_mid,
    residual_at,
    resolve_layer,
)
from transformer_lens.utils import Slice, SliceInput

Tokens = str | int | list[int] | Int[Tensor, "..."]


def accumulated_resid(
    cache: Cache,
    layer: int | None,
    incl_mid: bool,
    apply_ln: bool,
    pos_slice: Slice | SliceInput,
    mlp_input: bool,
    return_labels: bool,
) -> LabelledStack:
    """See ActivationCache.accumulated_resid."""
    layer = resolve_layer(cache, layer)
    check_mlp_input(cache, layer, mlp_input)
    if incl_mid and not has_resid_mid(cache):
        raise ValueError("incl_mid needs hook_resid_mid, which this model's blocks lack")
    n_layers = cache.model.cfg.n_layers
    components, labels = [], []
    for block in range(layer + 1):
        if block == n_layers:
            components.append(cached(cache, f"blocks.{n_layers - 1}.hook_resid_post"))
            labels.append("final_post")
            continue
        components.append(cached(cache, f"blocks.{block}.hook_resid_pre"))
        labels.append(f"{block}_pre")
        wants_mid = (incl_mid and block < layer) or (mlp_input and block == layer)
        if wants_mid and has_resid_mid(cache):
            components.append(cached(cache, f"blocks.{block}.hook_resid_mid"))
            labels.append(f"{block}_mid")
    pos = Slice(pos_slice)
    stack = torch.stack([pos.apply(component, dim=-2) for component in components])
    if apply_ln:
        stack = cache.apply_ln_to_stack(
            stack, layer, mlp_input, pos_slice=pos, recompute_ln=layer == n_layers
        )
    return (stack, labels) if return_labels else stack


def decompose_resid(
    cache: Cache,
    layer: int | None,
    mlp_input: bool,
    mode: str,
    apply_ln: bool,
    pos_slice: Slice | SliceInput,
    incl_embeds: bool,
    return_labels: bool,
) -> LabelledStack:
    """See ActivationCache.decompose_resid."""
    if mode not in ("all", "mlp", "attn"):
        raise ValueError(f"mode must be 'all', 'mlp' or 'attn'; got {mode!r}")
    layer = resolve_layer(cache, layer)
    check_mlp_input(cache, layer, mlp_input)
    cfg = cache.model.cfg
    names, labels = [], []
    if incl_embeds:
        names.append("hook_embed")
        labels.append("embed")
        # Shortformer caches hook_pos_embed but never adds it to the residual.
        if cfg.positional_embedding_type == "standard":
            names.append("hook_pos_embed")
            labels.append("pos_embed")
    for block in range(layer + 1):
        writes_attn = block < layer or (mlp_input and has_resid_mid(cache))
        if mode != "mlp" and writes_attn:
            names.append(f"blocks.{block}.hook_attn_out")
            labels.append(f"{block}_attn_out")
        if mode != "attn" and block < layer and not cfg.attn_only:
            names.append(f"blocks.{block}.hook_mlp_out")
            labels.append(f"{block}_mlp_out")
    pos = Slice(pos_slice)
    if names:
        stack = torch.stack([pos.apply(cached(cache, name), dim=-2) for name in names])
    else:
        residual = pos.apply(residual_at(cache, layer, mlp_input), dim=-2)
        stack = residual.new_zeros((0, *residual.shape))
    if apply_ln:
        stack = cache.apply_ln_to_stack(stack, layer, mlp_input, pos_slice=pos)
    return (stack, labels) if return_labels else stack


def get_full_resid_decomposition(
    cache: Cache,
    layer: int | None,
    mlp_input: bool,
    expand_neurons: bool,
    apply_ln: bool,
    pos_slice: Slice | SliceInput,
    return_labels: bool,
) -> LabelledStack:
    """See ActivationCache.get_full_resid_decomposition."""
    cfg = cache.model.cfg
    if cfg.use_normalization_before_and_after:
        raise ValueError(
            "ln1_post/ln2_post normalise each sublayer's output, so it is not a sum of "
            "head and neuron results; decompose_resid still splits it by sublayer"
        )
    layer = resolve_layer(cache, layer)
    check_mlp_input(cache, layer, mlp_input)
    pos = Slice(pos_slice)
    head_layers = layer + 1 if mlp_input and has_resid_mid(cache) else layer
    heads, labels = _labelled(
        cache.stack_head_results(head_layers, return_labels=True, pos_slice=pos)
    )
    parts = [heads]
    if not cfg.attn_only:
        if expand_neurons:
            neurons, neuron_labels = _labelled(
                cache.stack_neuron_results(layer, pos, return_labels=True)
            )
        else:
            neurons, neuron_labels = _labelled(
                cache.decompose_resid(
                    layer, mode="mlp", pos_slice=pos, incl_embeds=False, return_labels=True
                )
            )
        parts.append(neurons)
        labels += neuron_labels
    embeds, embed_labels = _labelled(cache.decompose_resid(0, pos_slice=pos, return_labels=True))
    # A whole hook_mlp_out already holds its b_out.
    bias = cache.model.accumulated_bias(layer, mlp_input, expand_neurons).detach()
    bias = bias.to(device=embeds.device, dtype=embeds.dtype).expand_as(embeds[0])
    parts += [embeds, bias[None]]
    labels += [*embed_labels, "bias"]
    stack = torch.cat(parts)
    if apply_ln:
        stack = cache.apply_ln_to_stack(stack, layer, mlp_input, pos_slice=pos)
    return (stack, labels) if return_labels else stack


def _labelled(result: LabelledStack) -> tuple[Stack, list[str]]:
    if not isinstance(result, tuple):
        raise TypeError("expected a (stack, labels) pair")
    return result


def logit_attrs(
    cache: Cache,
    residual_stack: Float[Tensor, "component *batch_and_pos d_model"],
    tokens: Tokens,
    incorrect_tokens: Tokens | None,
    pos_slice: Slice | SliceInput,
    batch_slice: Slice | SliceInput,
    has_batch_dim: bool,
) -> Float[Tensor, " component *batch_and_pos"]:
    """See ActivationCache.logit_attrs."""
    directions = cache.model.tokens_to_residual_directions(tokens).detach()
    if incorrect_tokens is not None:
        incorrect = cache.model.tokens_to_residual_directions(incorrect_tokens).detach()
        if incorrect.shape != directions.shape:
            raise ValueError(
                f"tokens and incorrect_tokens give directions of shapes "
                f"{tuple(directions.shape)} and {tuple(incorrect.shape)}; they must match"
            )
        directions = directions - incorrect
    scaled = cache.apply_ln_to_stack(
        residual_stack, None, False, pos_slice, batch_slice, has_batch_dim
    )
    if directions.shape not in (scaled.shape[1:], scaled.shape[-1:]):
        raise ValueError(
            f"Token directions of shape {tuple(directions.shape)} do not fit the stack of "
            f"shape {tuple(scaled.shape)}: give one token, or tokens shaped like "
            f"{tuple(scaled.shape[1:-1])}"
        )
    return (scaled * directions.to(device=scaled.device, dtype=scaled.dtype)).sum(-1)
