"""Gemma-2: Gemma-1 plus a norm after attention and after the MLP, tanh soft caps on the
attention scores and the logits, scores scaled by query_pre_attn_scalar rather than d_head,
and sliding-window attention on alternate layers (layer 0 slides, as in HF's layer_types;
a config without layer_types is refused, see _readers.declared_attention_types)."""

import math
from typing import Any

from transformer_lens.pretrained.adapter import hf, plus_one
from transformer_lens.pretrained.families._readers import (
    declared_attention_types,
    has_local_layers,
    window_of,
)
from transformer_lens.pretrained.families.gemma import GEMMA, LAYER
from transformer_lens.pretrained.official import OfficialModel


def query_pre_attn_scale(hf_config: Any) -> float:
    """HF scales scores by query_pre_attn_scalar ** -0.5; our attn_scale is the divisor."""
    return math.sqrt(hf_config.query_pre_attn_scalar)


def soft_cap(field: str) -> Any:
    """A reader of an HF soft-capping value: None (no cap) -> our -1.0."""

    def read(hf_config: Any) -> float:
        value = getattr(hf_config, field, None)
        if value is None:
            return -1.0
        if value <= 0:
            raise ValueError(
                f"{type(hf_config).__name__}.{field} must be positive or None, got {value}"
            )
        return float(value)

    read.__name__ = f"soft_cap({field})"
    return read


GEMMA2 = GEMMA.extend(
    architectures=("Gemma2ForCausalLM",),
    config={
        "attn_scale": query_pre_attn_scale,
        "attn_scores_soft_cap": soft_cap("attn_logit_softcapping"),
        "output_logits_soft_cap": soft_cap("final_logit_softcapping"),
        "use_local_attn": has_local_layers(declared_attention_types),
        "window_size": window_of(declared_attention_types),
        "attn_types": declared_attention_types,
    },
    fixed={"use_normalization_before_and_after": True},
    weights={
        "blocks.{i}.ln1_post.w": hf(f"{LAYER}.post_attention_layernorm.weight", transform=plus_one),
        "blocks.{i}.ln2.w": hf(f"{LAYER}.pre_feedforward_layernorm.weight", transform=plus_one),
        "blocks.{i}.ln2_post.w": hf(
            f"{LAYER}.post_feedforward_layernorm.weight", transform=plus_one
        ),
    },
    handled_fields={
        "query_pre_attn_scalar",
        "attn_logit_softcapping",
        "final_logit_softcapping",
        "sliding_window",
        "layer_types",
        "cache_implementation",  # generation-time KV cache layout only
    },
)

ADAPTERS = (GEMMA2,)


def _gemma2(
    layers: int,
    d_model: int,
    heads: int,
    kv_heads: int,
    d_head: int,
    d_mlp: int,
    query_pre_attn_scalar: int,
    aliases: tuple[str, ...],
) -> OfficialModel:
    return OfficialModel(
        architecture="Gemma2ForCausalLM",
        model_type="gemma2",
        hf_config={
            "vocab_size": 256000,
            "hidden_size": d_model,
            "intermediate_size": d_mlp,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads,
            "head_dim": d_head,
            "hidden_activation": "gelu_pytorch_tanh",
            "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0,
            "query_pre_attn_scalar": query_pre_attn_scalar,
            "sliding_window": 4096,
            "attn_logit_softcapping": 50.0,
            "final_logit_softcapping": 30.0,
            "tie_word_embeddings": True,
        },
        aliases=aliases,
    )


_2B = (26, 2304, 8, 4, 256, 9216, 256)
_9B = (42, 3584, 16, 8, 256, 14336, 256)
_27B = (46, 4608, 32, 16, 128, 36864, 144)

OFFICIAL: dict[str, OfficialModel] = {
    "google/gemma-2-2b": _gemma2(*_2B, aliases=("gemma-2-2b",)),
    "google/gemma-2-2b-it": _gemma2(*_2B, aliases=("gemma-2-2b-it",)),
    "google/gemma-2-9b": _gemma2(*_9B, aliases=("gemma-2-9b",)),
    "google/gemma-2-9b-it": _gemma2(*_9B, aliases=("gemma-2-9b-it",)),
    "google/gemma-2-27b": _gemma2(*_27B, aliases=("gemma-2-27b",)),
    "google/gemma-2-27b-it": _gemma2(*_27B, aliases=("gemma-2-27b-it",)),
}
