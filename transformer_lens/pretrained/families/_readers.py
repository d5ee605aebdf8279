"""The HF-config readers more than one family uses, and the checks they share.

A reader is a function of the HF config that returns one of our config values (or raises,
naming what it cannot honour); a family's config map points at it. A check only validates;
a family lists it in `Adapter.checks`. Readers that a single family uses stay in its module.

Rotary parameters come in two shapes: transformers 5 keeps them in `rope_parameters`,
transformers 4.x in `rope_theta` (or a family's own base field) plus `rope_scaling`.
`rope_parameters` reads either as the 5.x dict; the other rope readers start from it.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig

Reader = Callable[[Any], Any]

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(HookedTransformerConfig)}

# Rotary tables are n_ctx x d_head floats, a sin and a cos per layer once the model is moved
# to a device (each layer's buffers are copied separately): 128 MiB per layer at 131072
# positions and d_head 128, 8 MiB at 8192. So n_ctx is capped at 8192, which keeps the full
# context of Llama-2 (4096) and Meta-Llama-3 (8192); longer-context models (Llama-3.1/3.2,
# Mistral, Qwen2, Gemma-3) get 8192 rather than classic TransformerLens's 2048. Pass n_ctx=
# to from_pretrained for more.
MAX_N_CTX = 8192

# HF rope_type -> the rope_parameters entry it reads -> our config field.
ROPE_SCALING_PARAMETERS: dict[str, dict[str, str]] = {
    "default": {},
    "llama3": {
        "factor": "NTK_by_parts_factor",
        "low_freq_factor": "NTK_by_parts_low_freq_factor",
        "high_freq_factor": "NTK_by_parts_high_freq_factor",
        "original_max_position_embeddings": "NTK_original_ctx_len",
    },
    "linear": {"factor": "rotary_linear_scaling_factor"},
}

# HF's layer_types entries -> our attn_types entries.
_ATTENTION_TYPES = {"full_attention": "global", "sliding_attention": "local"}

# HF activation names whose HF function is the one our act_fn of the same name computes
# (HF "swish" is SiLU). Others, e.g. HF's trainable "xielu", are refused.
_SAME_ACTIVATION = {
    "gelu": "gelu",
    "gelu_new": "gelu_new",
    "gelu_fast": "gelu_fast",
    "gelu_pytorch_tanh": "gelu_pytorch_tanh",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}


# ----- shapes ----------------------------------------------------------------------------
def head_dim(hf_config: Any) -> int:
    value = getattr(hf_config, "head_dim", None)
    return int(value) if value else hf_config.hidden_size // hf_config.num_attention_heads


def grouped_kv_heads(hf_config: Any) -> int | None:
    """num_key_value_heads, or None (classic per-head K/V) when every query head has its own."""
    kv_heads = getattr(hf_config, "num_key_value_heads", None)
    return None if kv_heads in (None, hf_config.num_attention_heads) else int(kv_heads)


def capped_context(hf_config: Any) -> int:
    """max_position_embeddings, at most MAX_N_CTX (see there)."""
    return min(int(hf_config.max_position_embeddings), MAX_N_CTX)


def activation(field: str) -> Reader:
    """Our act_fn for the HF activation named by `field`, refusing names we do not mirror."""

    def read(hf_config: Any) -> str:
        name = getattr(hf_config, field)
        if name not in _SAME_ACTIVATION:
            raise ValueError(
                f"{type(hf_config).__name__}.{field}={name!r} is not supported; "
                f"supported: {sorted(_SAME_ACTIVATION)}"
            )
        return _SAME_ACTIVATION[name]

    read.__name__ = f"activation({field})"
    return read


# ----- rotary embedding ------------------------------------------------------------------
def rope_parameters(hf_config: Any, base_field: str = "rope_theta") -> dict[str, Any]:
    """rope_parameters of transformers 5, or 4.x's rope_scaling with the base from
    `base_field` (GPT-NeoX calls it rotary_emb_base) as rope_theta."""
    params = getattr(hf_config, "rope_parameters", None)
    if params:
        return dict(params)
    scaling = dict(getattr(hf_config, "rope_scaling", None) or {})
    scaling.setdefault("rope_type", scaling.pop("type", "default"))
    scaling["rope_theta"] = getattr(hf_config, base_field, 10000.0)
    return scaling


def only_default_rope(
    base_field: str = "rope_theta",
    supported: str = "this family supports only the default rotary embedding",
) -> Reader:
    """A reader of the rope parameters that refuses every scaled rotary variant, saying
    `supported` after the refused type."""

    def read(hf_config: Any) -> dict[str, Any]:
        params = rope_parameters(hf_config, base_field)
        rope_type = params.get("rope_type", "default")
        if rope_type != "default":
            raise ValueError(
                f"Unsupported rope type {rope_type!r} for {type(hf_config).__name__}; {supported}"
            )
        return params

    read.__name__ = f"only_default_rope({base_field})"
    return read


def scaled_rope(hf_config: Any) -> dict[str, Any]:
    """The rope parameters of the Llama-like families, which scale by parts (llama3) or
    linearly; refuses other rope types, per-layer rope and partial rotary."""
    params = rope_parameters(hf_config)
    name = type(hf_config).__name__
    if "rope_theta" not in params:
        raise ValueError(f"{name}: per-layer rope_parameters {params} are not supported")
    rope_type = params.get("rope_type", "default")
    if rope_type not in ROPE_SCALING_PARAMETERS:
        raise ValueError(
            f"Unsupported rope type {rope_type!r} for {name}; "
            f"supported: {sorted(ROPE_SCALING_PARAMETERS)}"
        )
    if params.get("partial_rotary_factor", 1.0) != 1.0:
        raise ValueError(f"{name}: partial_rotary_factor {params['partial_rotary_factor']} != 1")
    return params


def theta_of(rope: Reader) -> Reader:
    """Our rotary_base: rope_theta of the parameters that `rope` reads."""

    def read(hf_config: Any) -> float:
        return float(rope(hf_config)["rope_theta"])

    read.__name__ = f"theta_of({rope.__name__})"
    return read


def rotary_dim_of(rope: Reader, fraction_field: str = "partial_rotary_factor") -> Reader:
    """HF rotates the first int(head_dim * fraction) dims of each head: the fraction is
    partial_rotary_factor of the parameters `rope` reads, else the config's own
    `fraction_field` (GPT-NeoX of transformers 4 calls it rotary_pct), else 1."""

    def read(hf_config: Any) -> int:
        fraction = rope(hf_config).get(
            "partial_rotary_factor", getattr(hf_config, fraction_field, 1.0)
        )
        return int(head_dim(hf_config) * float(fraction))

    read.__name__ = f"rotary_dim_of({rope.__name__}, {fraction_field})"
    return read


default_rope_theta = theta_of(only_default_rope())
rope_theta = theta_of(scaled_rope)


def rope_type_is(rope_type: str) -> Reader:
    def read(hf_config: Any) -> bool:
        return scaled_rope(hf_config).get("rope_type", "default") == rope_type

    read.__name__ = f"rope_type_is({rope_type})"
    return read


def rope_scaling_value(rope_type: str, ours: str) -> Reader:
    """Our field `ours` from this rope type's parameter; the field's default otherwise."""
    (key,) = [k for k, field in ROPE_SCALING_PARAMETERS[rope_type].items() if field == ours]
    cast = int if ours == "NTK_original_ctx_len" else float

    def read(hf_config: Any) -> Any:
        params = scaled_rope(hf_config)
        if params.get("rope_type", "default") != rope_type:
            return _DEFAULTS[ours]
        return cast(params[key])

    read.__name__ = f"rope_scaling_value({rope_type}, {key})"
    return read


# ----- which layers slide, and by how much -------------------------------------------------
def _local_or_global(hf_config: Any, layer_types: list[str]) -> list[str] | None:
    unknown = sorted(set(layer_types) - set(_ATTENTION_TYPES))
    if unknown:
        raise ValueError(
            f"{type(hf_config).__name__}.layer_types has unsupported entries {unknown}; "
            f"supported: {sorted(_ATTENTION_TYPES)}"
        )
    types = [_ATTENTION_TYPES[layer_type] for layer_type in layer_types]
    return types if "local" in types else None


def attention_types(hf_config: Any) -> list[str] | None:
    """Per-layer "local"/"global" from HF's layer_types, or None when no layer slides.
    Configs older than layer_types slide the layers from max_window_layers on (Qwen)."""
    layer_types = getattr(hf_config, "layer_types", None)
    if layer_types is None:
        slides = getattr(hf_config, "use_sliding_window", False)
        first_sliding = getattr(hf_config, "max_window_layers", hf_config.num_hidden_layers)
        layer_types = [
            "sliding_attention" if slides and i >= first_sliding else "full_attention"
            for i in range(hf_config.num_hidden_layers)
        ]
    return _local_or_global(hf_config, layer_types)


def declared_attention_types(hf_config: Any) -> list[str] | None:
    """As attention_types, but refusing a config without layer_types: guessing from
    max_window_layers would make no Gemma layer slide."""
    layer_types = getattr(hf_config, "layer_types", None)
    if layer_types is None:
        raise ValueError(
            f"{type(hf_config).__name__} has no layer_types: cannot tell which layers use "
            "sliding-window attention (configs of transformers >= 5 always carry it)"
        )
    return _local_or_global(hf_config, layer_types)


def every_layer_local(hf_config: Any) -> list[str] | None:
    """sliding_window (an int) applies to every layer; None means global attention."""
    if hf_config.sliding_window is None:
        return None
    return ["local"] * hf_config.num_hidden_layers


def has_local_layers(layer_types: Reader) -> Reader:
    def read(hf_config: Any) -> bool:
        return layer_types(hf_config) is not None

    read.__name__ = f"has_local_layers({layer_types.__name__})"
    return read


def window_of(layer_types: Reader) -> Reader:
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


# ----- checks (Adapter.checks): validate only -----------------------------------------------
def must_be_false(field: str) -> Callable[[Any], None]:
    """A check that refuses a feature flag we do not implement."""

    def check(hf_config: Any) -> None:
        if getattr(hf_config, field, None):
            raise ValueError(f"{type(hf_config).__name__}.{field}=True is not supported")

    check.__name__ = f"must_be_false({field})"
    return check
