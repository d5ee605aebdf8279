"""Helpers between TransformerLens and LIT: tensor <-> numpy, tokens, reading attention and
embeddings out of an ActivationCache, top-k predictions, token gradients and batching.
None of them needs lit-nlp."""

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from transformer_lens.HookedTransformer import HookedTransformer
from transformer_lens.lit._gradients import embedding_gradients
from transformer_lens.lit._lit_api import lit_installed
from transformer_lens.lit.constants import ERRORS, HOOK_POINTS

logger = logging.getLogger(__name__)

EMBEDDING_POSITIONS = ("all", "first", "last", "mean")
"""What extract_embeddings_from_cache can return: every position, one of them, or the mean."""


def check_lit_installed() -> bool:
    """Whether lit-nlp is installed, i.e. its package imports."""
    return lit_installed()


def tensor_to_numpy(tensor: Tensor | np.ndarray | None) -> np.ndarray | None:
    """A detached CPU numpy copy of `tensor`, as LIT wants; arrays and None pass through."""
    if tensor is None or isinstance(tensor, np.ndarray):
        return tensor
    if not isinstance(tensor, Tensor):
        raise TypeError(f"Expected torch.Tensor or np.ndarray, got {type(tensor)}")
    # numpy has no bfloat16; float32 holds every bfloat16 value exactly.
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.detach().cpu().numpy()


def numpy_to_tensor(
    array: np.ndarray | Tensor | None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor | None:
    """`array` as a tensor, moved to `device` and cast to `dtype` when given; None passes."""
    if array is None:
        return None
    tensor = array if isinstance(array, Tensor) else torch.from_numpy(array)
    return tensor.to(device=device, dtype=dtype)


def get_tokens_from_model(
    model: HookedTransformer,
    text: str,
    prepend_bos: bool = True,
    truncate: bool = True,
    max_length: int | None = None,
) -> tuple[list[str], Int[Tensor, " pos"]]:
    """(token strings, token ids) of `text` as `model.to_tokens` makes them, cut to
    `max_length` tokens when given. The strings are the tokenizer's raw vocabulary entries."""
    if model.tokenizer is None:
        raise ValueError(ERRORS.NO_TOKENIZER)
    token_ids = model.to_tokens(text, prepend_bos=prepend_bos, truncate=truncate)[0]
    if max_length is not None:
        token_ids = token_ids[:max_length]
    return model.tokenizer.convert_ids_to_tokens(token_ids.tolist()), token_ids


def clean_token_string(token: str) -> str:
    """A vocabulary entry for display: GPT-2's "Ġ" space becomes SentencePiece's "▁", and
    BERT's "##" continuation prefix is dropped."""
    if token.startswith("Ġ"):
        return "▁" + token[1:]
    if token.startswith("##"):
        return token[2:]
    return token


def clean_token_strings(tokens: list[str]) -> list[str]:
    """clean_token_string of each token."""
    return [clean_token_string(token) for token in tokens]


def _cached(cache: Any, template: str, layer: int) -> Tensor:
    name = template.format(layer=layer)
    if name not in cache:
        raise KeyError(f"no {name!r} in the cache: layer {layer} does not exist or was not cached")
    activation: Tensor = cache[name]
    return activation


def extract_attention_from_cache(
    cache: Any, layer: int, head: int | None = None, batch_idx: int = 0
) -> np.ndarray | None:
    """The attention pattern of `layer` for one sequence: [head_index, query_pos, key_pos],
    or [query_pos, key_pos] for one `head`. One pattern per query head, grouped or not."""
    pattern = _cached(cache, HOOK_POINTS.ATTN_PATTERN_TEMPLATE, layer)
    if pattern.dim() == 4:
        pattern = pattern[batch_idx]
    if head is not None:
        if not -pattern.shape[0] <= head < pattern.shape[0]:
            raise IndexError(f"head {head} out of range: layer {layer} has {pattern.shape[0]}")
        pattern = pattern[head]
    return tensor_to_numpy(pattern)


def extract_embeddings_from_cache(
    cache: Any, layer: int, position: str = "all", batch_idx: int = 0
) -> np.ndarray | None:
    """The residual stream after block `layer` for one sequence: every position [pos,
    d_model], or the "first", the "last" or the "mean" over positions [d_model]."""
    if position not in EMBEDDING_POSITIONS:
        raise ValueError(f"position must be one of {EMBEDDING_POSITIONS}, got {position!r}")
    resid = _cached(cache, HOOK_POINTS.RESID_POST_TEMPLATE, layer)
    if resid.dim() == 3:
        resid = resid[batch_idx]
    if position == "first":
        resid = resid[0]
    elif position == "last":
        resid = resid[-1]
    elif position == "mean":
        resid = resid.mean(dim=0)
    return tensor_to_numpy(resid)


def compute_token_gradients(
    model: HookedTransformer, text: str, target_idx: int | None = None, prepend_bos: bool = True
) -> tuple[np.ndarray | None, np.ndarray | None, list[str]]:
    """(grad_l2 [pos], grad_dot_input [pos], token strings) for the logit that position
    `target_idx` gives the token after it (None: the second-to-last position, which
    predicts the last token), differentiated with respect to the token embeddings."""
    tokens, token_ids = get_tokens_from_model(model, text, prepend_bos=prepend_bos)
    gradient, embeddings = embedding_gradients(model, token_ids.to(model.cfg.device), target_idx)
    grad_l2 = gradient.norm(dim=-1)
    grad_dot_input = (gradient * embeddings).sum(dim=-1)
    return tensor_to_numpy(grad_l2), tensor_to_numpy(grad_dot_input), tokens


def get_top_k_predictions(
    logits: Float[Tensor, "batch pos d_vocab"],
    tokenizer: Any,
    k: int = 10,
    position: int = -1,
    batch_idx: int = 0,
) -> list[tuple[str, float]]:
    """The `k` likeliest next tokens at `position` of sequence `batch_idx`, as (decoded
    token, softmax probability), likeliest first."""
    probs = torch.softmax(logits[batch_idx, position], dim=-1)
    top_probs, top_ids = torch.topk(probs, k)
    return [
        (tokenizer.decode([token_id]), prob)
        for prob, token_id in zip(top_probs.tolist(), top_ids.tolist(), strict=True)
    ]


def validate_input_example(example: Mapping[str, Any], required_fields: Sequence[str]) -> bool:
    """Whether `example` has every required field; logs a warning naming the first missing."""
    for field in required_fields:
        if field not in example:
            logger.warning("Missing required field '%s' in input example", field)
            return False
    return True


def batch_examples(examples: list[dict[str, Any]], batch_size: int) -> list[list[dict[str, Any]]]:
    """`examples` in consecutive batches of `batch_size`; the last may be shorter."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return [examples[i : i + batch_size] for i in range(0, len(examples), batch_size)]


def unbatch_outputs(batched_outputs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One dict per example from a dict of batched fields: arrays, tensors and lists are
    split along their first axis, other values are repeated in every example."""
    if not batched_outputs:
        return []
    sizes = {
        key: len(value)
        for key, value in batched_outputs.items()
        if isinstance(value, np.ndarray | Tensor | list)
    }
    if not sizes:
        raise ValueError(
            f"unbatch_outputs needs at least one array, tensor or list field to split; got "
            f"only {sorted(batched_outputs)}"
        )
    batch_size = next(iter(sizes.values()))
    for key, size in sizes.items():
        if size != batch_size:
            raise ValueError(
                f"field {key!r}: "
                + ERRORS.BATCH_SIZE_MISMATCH.format(expected=batch_size, actual=size)
            )
    return [
        {key: value[i] if key in sizes else value for key, value in batched_outputs.items()}
        for i in range(batch_size)
    ]


def get_hook_name_for_layer(template: str, layer: int, **kwargs: Any) -> str:
    """`template` (e.g. HOOK_POINTS.RESID_POST_TEMPLATE) filled in with `layer` and kwargs."""
    return template.format(layer=layer, **kwargs)


def filter_cache_by_pattern(cache: Any, pattern: str) -> dict[str, Tensor]:
    """The cache entries whose hook name contains `pattern`."""
    return {name: value for name, value in cache.items() if pattern in name}


def get_model_info(model: HookedTransformer) -> dict[str, Any]:
    """The config fields LIT shows about a model."""
    fields = (
        "model_name n_layers n_heads d_model d_head d_mlp d_vocab n_ctx act_fn "
        "normalization_type positional_embedding_type"
    )
    return {field: getattr(model.cfg, field) for field in fields.split()}
