"""Gemma-3 text models (Gemma3ForCausalLM): Gemma-2's block plus RMSNorm on each query and
key head (stored as 1 + w, like every Gemma norm), a rotary base of their own for the
sliding layers, and no attention soft cap. Five sliding layers per global one (HF's
layer_types). The multimodal Gemma3ForConditionalGeneration is not handled.

n_ctx is capped as for the Llama-like families (see _readers.MAX_N_CTX): rotary tables
of 32768 positions would cost 64 MiB per layer on the device. Pass n_ctx= for more."""

from typing import Any

from transformer_lens.pretrained.adapter import hf, plus_one
from transformer_lens.pretrained.families._readers import capped_context, rope_parameters
from transformer_lens.pretrained.families.gemma import LAYER
from transformer_lens.pretrained.families.gemma2 import GEMMA2
from transformer_lens.pretrained.official import OfficialModel


def _layer_rope(hf_config: Any, layer_type: str) -> dict[str, Any]:
    params = getattr(hf_config, "rope_parameters", None) or {}
    if layer_type in params:  # transformers 5: one entry per layer type
        return dict(params[layer_type] or {})
    if layer_type == "sliding_attention":  # transformers 4.x: a plain base, never scaled
        return {"rope_type": "default", "rope_theta": hf_config.rope_local_base_freq}
    return rope_parameters(hf_config)


def rope_theta_of(layer_type: str) -> Any:
    """A reader of the rotary base of one layer type, refusing scaled rotary embeddings:
    our config applies one scaling to every layer, and Gemma-3 scales the global ones only."""

    def read(hf_config: Any) -> float:
        params = _layer_rope(hf_config, layer_type)
        rope_type = params.get("rope_type", "default")
        if rope_type != "default":
            raise ValueError(
                f"{type(hf_config).__name__}.rope_parameters[{layer_type!r}] (rope_scaling in "
                f"transformers 4) has rope_type {rope_type!r}: {params}. HookedTransformerConfig "
                "cannot scale the rotary embedding of one layer type only"
            )
        return float(params["rope_theta"])

    read.__name__ = f"rope_theta_of({layer_type})"
    return read


def no_attention_soft_cap(hf_config: Any) -> float:
    """HF's Gemma-3 attention never applies attn_logit_softcapping, so a value set there is
    ambiguous (capped as the config says, or uncapped as HF runs it): refuse it."""
    value = getattr(hf_config, "attn_logit_softcapping", None)
    if value is not None:
        raise ValueError(
            f"{type(hf_config).__name__}.attn_logit_softcapping={value} is not supported: "
            "Hugging Face's Gemma-3 attention ignores it"
        )
    return -1.0


GEMMA3 = GEMMA2.extend(
    architectures=("Gemma3ForCausalLM",),
    config={
        "n_ctx": capped_context,
        "attn_scores_soft_cap": no_attention_soft_cap,
        "rotary_base": rope_theta_of("full_attention"),
        "rotary_base_local": rope_theta_of("sliding_attention"),
    },
    fixed={"use_qk_norm": True},
    weights={
        "blocks.{i}.attn.q_norm.w": hf(f"{LAYER}.self_attn.q_norm.weight", transform=plus_one),
        "blocks.{i}.attn.k_norm.w": hf(f"{LAYER}.self_attn.k_norm.weight", transform=plus_one),
    },
    handled_fields={
        "rope_local_base_freq",
        "sliding_window_pattern",  # transformers 4.x; layer_types is derived from it
    },
)

ADAPTERS = (GEMMA3,)


def _gemma3(
    layers: int, d_model: int, heads: int, d_mlp: int, aliases: tuple[str, ...]
) -> OfficialModel:
    return OfficialModel(
        architecture="Gemma3ForCausalLM",
        model_type="gemma3_text",
        hf_config={
            "vocab_size": 262144,
            "hidden_size": d_model,
            "intermediate_size": d_mlp,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": 1,
            "head_dim": 256,
            "hidden_activation": "gelu_pytorch_tanh",
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            "rope_local_base_freq": 10000.0,
            "query_pre_attn_scalar": 256,
            "sliding_window": 512,
            "sliding_window_pattern": 6,
            "attn_logit_softcapping": None,
            "final_logit_softcapping": None,
            "tie_word_embeddings": True,
        },
        aliases=aliases,
    )


_270M = (18, 640, 4, 2048)
_1B = (26, 1152, 4, 6912)

OFFICIAL: dict[str, OfficialModel] = {
    "google/gemma-3-270m": _gemma3(*_270M, aliases=("gemma-3-270m",)),
    "google/gemma-3-270m-it": _gemma3(*_270M, aliases=("gemma-3-270m-it",)),
    "google/gemma-3-1b-pt": _gemma3(*_1B, aliases=("gemma-3-1b-pt", "gemma-3-1b")),
    "google/gemma-3-1b-it": _gemma3(*_1B, aliases=("gemma-3-1b-it",)),
}
