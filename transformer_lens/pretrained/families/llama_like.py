"""The shared table of Llama-style decoders (Llama, Mistral, Qwen2): pre-norm RMSNorm blocks,
rotary attention with grouped keys/values, a SiLU-gated MLP and an RMS final norm. The family
modules extend it with their deltas; the named config readers they need live here too."""

import dataclasses
from collections.abc import Callable
from typing import Any

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.pretrained.adapter import (
    Adapter,
    WeightSource,
    head_bias,
    heads_in,
    heads_out,
    hf,
    optional,
    transposed,
    zeros,
)
from transformer_lens.pretrained.families.hf_config import head_dim, rope_parameters

LAYER = "model.layers.{i}"
ATTENTION = f"{LAYER}.self_attn"

# Rotary tables are n_ctx x d_head floats, a sin and a cos per layer once the model is moved
# to a device (each layer's buffers are copied separately): 128 MiB per layer at 131072
# positions and d_head 128, 8 MiB at 8192. So n_ctx is capped at 8192, which keeps the full
# context of Llama-2 (4096) and Meta-Llama-3 (8192); longer-context models (Llama-3.1/3.2,
# Mistral, Qwen2) get 8192 rather than classic TransformerLens's 2048. Pass n_ctx= to
# from_pretrained for more.
MAX_N_CTX = 8192

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(HookedTransformerConfig)}
# HF rope_type -> the rope_parameters entry it reads -> our config field.
_ROPE_SCALING: dict[str, dict[str, str]] = {
    "default": {},
    "llama3": {
        "factor": "NTK_by_parts_factor",
        "low_freq_factor": "NTK_by_parts_low_freq_factor",
        "high_freq_factor": "NTK_by_parts_high_freq_factor",
        "original_max_position_embeddings": "NTK_original_ctx_len",
    },
    "linear": {"factor": "rotary_linear_scaling_factor"},
}
# HF's layer_types (recent transformers; older configs only have max_window_layers) -> ours.
_ATTENTION_TYPES = {"full_attention": "global", "sliding_attention": "local"}


# ----- config readers --------------------------------------------------------------------
def rope(hf_config: Any) -> dict[str, Any]:
    """The rope parameters, refusing rope types, per-layer rope and partial rotary we lack."""
    params = rope_parameters(hf_config)
    name = type(hf_config).__name__
    if "rope_theta" not in params:
        raise ValueError(f"{name}: per-layer rope_parameters {params} are not supported")
    rope_type = params.get("rope_type", "default")
    if rope_type not in _ROPE_SCALING:
        raise ValueError(
            f"Unsupported rope type {rope_type!r} for {name}; supported: {sorted(_ROPE_SCALING)}"
        )
    if params.get("partial_rotary_factor", 1.0) != 1.0:
        raise ValueError(f"{name}: partial_rotary_factor {params['partial_rotary_factor']} != 1")
    return params


def rope_theta(hf_config: Any) -> float:
    return float(rope(hf_config)["rope_theta"])


def rope_type_is(rope_type: str) -> Callable[[Any], bool]:
    def read(hf_config: Any) -> bool:
        return rope(hf_config).get("rope_type", "default") == rope_type

    read.__name__ = f"rope_type_is({rope_type})"
    return read


def rope_scaling_value(rope_type: str, ours: str) -> Callable[[Any], Any]:
    """Our field `ours` from this rope type's parameter; the field's default otherwise."""
    (key,) = [k for k, field in _ROPE_SCALING[rope_type].items() if field == ours]
    cast = int if ours == "NTK_original_ctx_len" else float

    def read(hf_config: Any) -> Any:
        params = rope(hf_config)
        if params.get("rope_type", "default") != rope_type:
            return _DEFAULTS[ours]
        return cast(params[key])

    read.__name__ = f"rope_scaling_value({rope_type}, {key})"
    return read


def capped_context(hf_config: Any) -> int:
    return min(int(hf_config.max_position_embeddings), MAX_N_CTX)


def grouped_kv_heads(hf_config: Any) -> int | None:
    """num_key_value_heads, or None (classic per-head K/V) when every query head has its own."""
    kv_heads = getattr(hf_config, "num_key_value_heads", None)
    return None if kv_heads in (None, hf_config.num_attention_heads) else int(kv_heads)


def every_layer_local(hf_config: Any) -> list[str] | None:
    """Mistral: sliding_window (an int) applies to every layer; None means global attention."""
    if hf_config.sliding_window is None:
        return None
    return ["local"] * hf_config.num_hidden_layers


def attention_types(hf_config: Any) -> list[str] | None:
    """Per-layer "local"/"global" from HF's layer_types, or None when no layer slides.
    Configs older than layer_types slide the layers from max_window_layers on."""
    layer_types = getattr(hf_config, "layer_types", None)
    if layer_types is None:
        slides = getattr(hf_config, "use_sliding_window", False)
        first_sliding = getattr(hf_config, "max_window_layers", hf_config.num_hidden_layers)
        layer_types = [
            "sliding_attention" if slides and i >= first_sliding else "full_attention"
            for i in range(hf_config.num_hidden_layers)
        ]
    unknown = sorted(set(layer_types) - set(_ATTENTION_TYPES))
    if unknown:
        raise ValueError(
            f"{type(hf_config).__name__}.layer_types has unsupported entries {unknown}; "
            f"supported: {sorted(_ATTENTION_TYPES)}"
        )
    types = [_ATTENTION_TYPES[layer_type] for layer_type in layer_types]
    return types if "local" in types else None


def window_of(layer_types: Callable[[Any], list[str] | None]) -> Callable[[Any], int | None]:
    """The sliding window of the local layers that `layer_types` finds, or None."""

    def read(hf_config: Any) -> int | None:
        if layer_types(hf_config) is None:
            return None
        window = getattr(hf_config, "sliding_window", None)
        if not isinstance(window, int) or window <= 0:
            raise ValueError(
                f"{type(hf_config).__name__} has sliding-window layers but "
                f"sliding_window={window!r}"
            )
        return window

    read.__name__ = f"window_of({layer_types.__name__})"
    return read


def has_local_layers(layer_types: Callable[[Any], list[str] | None]) -> Callable[[Any], bool]:
    def read(hf_config: Any) -> bool:
        return layer_types(hf_config) is not None

    read.__name__ = f"has_local_layers({layer_types.__name__})"
    return read


# ----- weight sources --------------------------------------------------------------------
def optional_bias(projection: str, n_heads_field: str | None = None) -> WeightSource:
    """`{projection}.bias` when the checkpoint has it (attention_bias=True), else zeros."""
    key = f"{ATTENTION}.{projection}.bias"
    if n_heads_field is None:
        return optional(key, otherwise=zeros("d_model"))
    return optional(
        key, transform=head_bias(n_heads_field), otherwise=zeros(n_heads_field, "d_head")
    )


LLAMA_LIKE = Adapter(
    architectures=(),
    config={
        "d_model": "hidden_size",
        "d_head": head_dim,
        "n_heads": "num_attention_heads",
        "n_key_value_heads": "num_key_value_heads",
        "d_mlp": "intermediate_size",
        "n_layers": "num_hidden_layers",
        "n_ctx": capped_context,
        "eps": "rms_norm_eps",
        "d_vocab": "vocab_size",
        "act_fn": "hidden_act",
        "rotary_base": rope_theta,
        "use_NTK_by_parts_rope": rope_type_is("llama3"),
        **{
            field: rope_scaling_value("llama3", field) for field in _ROPE_SCALING["llama3"].values()
        },
        "rotary_linear_scaling_factor": rope_scaling_value(
            "linear", "rotary_linear_scaling_factor"
        ),
    },
    fixed={
        "normalization_type": "RMS",
        "positional_embedding_type": "rotary",
        "gated_mlp": True,
        "final_rms": True,
        # HF's LlamaRMSNorm (and Mistral's, Qwen2's) casts to the model dtype, then weighs.
        "rms_norm_cast_before_weight": True,
    },
    weights={
        "embed.W_E": hf("model.embed_tokens.weight"),
        "blocks.{i}.ln1.w": hf(f"{LAYER}.input_layernorm.weight"),
        "blocks.{i}.ln2.w": hf(f"{LAYER}.post_attention_layernorm.weight"),
        "blocks.{i}.attn.W_Q": hf(f"{ATTENTION}.q_proj.weight", transform=heads_in("n_heads")),
        "blocks.{i}.attn._W_K": hf(
            f"{ATTENTION}.k_proj.weight", transform=heads_in("n_key_value_heads")
        ),
        "blocks.{i}.attn._W_V": hf(
            f"{ATTENTION}.v_proj.weight", transform=heads_in("n_key_value_heads")
        ),
        "blocks.{i}.attn.W_O": hf(f"{ATTENTION}.o_proj.weight", transform=heads_out),
        "blocks.{i}.attn.b_Q": zeros("n_heads", "d_head"),
        "blocks.{i}.attn._b_K": zeros("n_key_value_heads", "d_head"),
        "blocks.{i}.attn._b_V": zeros("n_key_value_heads", "d_head"),
        "blocks.{i}.attn.b_O": zeros("d_model"),
        "blocks.{i}.mlp.W_gate": hf(f"{LAYER}.mlp.gate_proj.weight", transform=transposed),
        "blocks.{i}.mlp.W_in": hf(f"{LAYER}.mlp.up_proj.weight", transform=transposed),
        "blocks.{i}.mlp.W_out": hf(f"{LAYER}.mlp.down_proj.weight", transform=transposed),
        "blocks.{i}.mlp.b_in": zeros("d_mlp"),
        "blocks.{i}.mlp.b_out": zeros("d_model"),
        "ln_final.w": hf("model.norm.weight"),
        # Tied checkpoints saved to disk have no lm_head.weight: the embedding is the unembedding.
        "unembed.W_U": hf("lm_head.weight", "model.embed_tokens.weight", transform=transposed),
        "unembed.b_U": zeros("d_vocab_out"),
    },
    handled_fields=frozenset(
        {
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "hidden_act",
            "max_position_embeddings",
            "rms_norm_eps",
            "rope_parameters",
            "rope_theta",
            "rope_scaling",
        }
    ),  # fmt: skip
)
