"""HookedTransformerLIT's prediction for one example: tokens, top-k next tokens, embeddings,
attention patterns and token gradients, as the numpy arrays and lists LIT reads."""

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from transformer_lens.ActivationCache import ActivationCache
from transformer_lens.HookedTransformer import HookedTransformer
from transformer_lens.lit._config import HookedTransformerLITConfig, embedding_layers
from transformer_lens.lit._gradients import embedding_gradients
from transformer_lens.lit.constants import ERRORS, HOOK_POINTS, INPUT_FIELDS, OUTPUT_FIELDS
from transformer_lens.lit.utils import (
    clean_token_strings,
    extract_attention_from_cache,
    get_tokens_from_model,
    get_top_k_predictions,
    tensor_to_numpy,
)

TopK = list[tuple[str, float]]


def example_text(example: Mapping[str, Any]) -> str:
    """The text field of an input example, or a ValueError naming what it has instead."""
    if INPUT_FIELDS.TEXT not in example:
        raise ValueError(
            ERRORS.INCOMPATIBLE_INPUT.format(expected=[INPUT_FIELDS.TEXT], actual=sorted(example))
        )
    text = example[INPUT_FIELDS.TEXT]
    if not isinstance(text, str):
        raise TypeError(f"example field {INPUT_FIELDS.TEXT!r} must be a str, got {type(text)}")
    return text


def predict_example(
    model: HookedTransformer, config: HookedTransformerLITConfig, example: Mapping[str, Any]
) -> dict[str, Any]:
    """The output_spec fields for one example. Gradients take a second forward pass."""
    text = example_text(example)
    if model.tokenizer is None:
        raise ValueError(ERRORS.NO_TOKENIZER)
    tokens, token_ids = get_tokens_from_model(
        model, text, prepend_bos=config.prepend_bos, max_length=config.max_seq_length
    )
    token_ids = token_ids.to(config.device)
    n_layers = model.cfg.n_layers
    layers = embedding_layers(config, n_layers)
    with torch.no_grad():
        logits, cache = model.run_with_cache(
            token_ids[None], names_filter=_needed_hooks(config, n_layers, layers)
        )
    output: dict[str, Any] = {
        OUTPUT_FIELDS.TOKENS: clean_token_strings(tokens),
        OUTPUT_FIELDS.TOP_K_TOKENS: top_k_per_position(logits, model.tokenizer, config.top_k),
    }
    if config.output_embeddings:
        output.update(_embeddings(cache, n_layers, layers))
    if config.output_attention:
        output.update(_attention(cache, n_layers))
    if config.compute_gradients:
        output.update(_gradients(model, token_ids))
    return output


def top_k_per_position(
    logits: Float[Tensor, "1 pos d_vocab"], tokenizer: Any, k: int
) -> list[TopK]:
    """get_top_k_predictions at every position of a single sequence."""
    return [
        get_top_k_predictions(logits, tokenizer, k=k, position=position)
        for position in range(logits.shape[1])
    ]


def _needed_hooks(
    config: HookedTransformerLITConfig, n_layers: int, layers: list[int]
) -> list[str]:
    """Only the activations the outputs read, so long texts do not cache every hook."""
    names: list[str] = []
    if config.output_embeddings:
        names.append(HOOK_POINTS.HOOK_EMBED)
        for layer in sorted({*layers, n_layers - 1}):
            names.append(HOOK_POINTS.RESID_POST_TEMPLATE.format(layer=layer))
    if config.output_attention:
        names += [HOOK_POINTS.ATTN_PATTERN_TEMPLATE.format(layer=i) for i in range(n_layers)]
    return names


def _embeddings(cache: ActivationCache, n_layers: int, layers: list[int]) -> dict[str, Any]:
    """Input token embeddings [pos, d_model]; the final residual stream's first position
    ("CLS") and mean [d_model]; and the mean residual stream after each of `layers`."""
    final = cache[HOOK_POINTS.RESID_POST_TEMPLATE.format(layer=n_layers - 1)][0]
    output = {
        OUTPUT_FIELDS.INPUT_EMBEDDINGS: tensor_to_numpy(cache[HOOK_POINTS.HOOK_EMBED][0]),
        OUTPUT_FIELDS.CLS_EMBEDDING: tensor_to_numpy(final[0]),
        OUTPUT_FIELDS.MEAN_EMBEDDING: tensor_to_numpy(final.mean(dim=0)),
    }
    for layer in layers:
        resid = cache[HOOK_POINTS.RESID_POST_TEMPLATE.format(layer=layer)][0]
        output[OUTPUT_FIELDS.LAYER_EMB_TEMPLATE.format(layer=layer)] = tensor_to_numpy(
            resid.mean(dim=0)
        )
    return output


def _attention(cache: ActivationCache, n_layers: int) -> dict[str, np.ndarray | None]:
    """Each layer's pattern [head_index, query_pos, key_pos], one per query head."""
    return {
        OUTPUT_FIELDS.LAYER_ATTENTION_TEMPLATE.format(layer=layer): extract_attention_from_cache(
            cache, layer
        )
        for layer in range(n_layers)
    }


def _gradients(model: HookedTransformer, token_ids: Int[Tensor, " pos"]) -> dict[str, Any]:
    """The gradient [pos, d_model] of the logit that the second-to-last position gives the
    last token, under both gradient fields: LIT's GradientNorm and GradientDotInput
    components reduce it themselves (the dot product with input_embeddings)."""
    gradient, _ = embedding_gradients(model, token_ids)
    as_numpy = tensor_to_numpy(gradient)
    return {OUTPUT_FIELDS.GRAD_L2: as_numpy, OUTPUT_FIELDS.GRAD_DOT_INPUT: as_numpy}
