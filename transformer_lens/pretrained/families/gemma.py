"""Gemma (1): multi-query 2b, multi-head 7b. RMSNorm stored as 1 + w, embeddings scaled by
sqrt(d_model), tanh-approximated GELU gated MLP, tied unembedding."""

from typing import Any

from transformer_lens.pretrained.adapter import hf, plus_one, times_sqrt_d_model
from transformer_lens.pretrained.families._readers import default_rope_theta, must_be_false
from transformer_lens.pretrained.families.llama_like import LAYER, LLAMA_LIKE, ROPE_SCALING
from transformer_lens.pretrained.official import OfficialModel


def _gemma_activation(hf_config: Any) -> str:
    # Official Gemma configs say "gelu" but mean the tanh approximation (HF rewrites it too).
    name = getattr(hf_config, "hidden_activation", None) or hf_config.hidden_act
    return "gelu_pytorch_tanh" if name in ("gelu", "gelu_pytorch_tanh") else name


# Llama's table with Gemma's scaled embedding and 1 + w norms, the default rotary embedding
# only, the full context, and Gemma's norm order (weigh in float32, then cast).
GEMMA = LLAMA_LIKE.extend(
    architectures=("GemmaForCausalLM",),
    remove={"config": ROPE_SCALING, "fixed": ("rms_norm_cast_before_weight",)},
    config={
        "n_ctx": "max_position_embeddings",
        "act_fn": _gemma_activation,
        "rotary_base": default_rope_theta,
    },
    checks=(must_be_false("attention_bias"), must_be_false("use_bidirectional_attention")),
    weights={
        "embed.W_E": hf("model.embed_tokens.weight", transform=times_sqrt_d_model),
        "blocks.{i}.ln1.w": hf(f"{LAYER}.input_layernorm.weight", transform=plus_one),
        "blocks.{i}.ln2.w": hf(f"{LAYER}.post_attention_layernorm.weight", transform=plus_one),
        "ln_final.w": hf("model.norm.weight", transform=plus_one),
    },
    handled_fields={"hidden_activation", "attention_bias", "use_bidirectional_attention"},
)

ADAPTERS = (GEMMA,)


def _gemma(
    layers: int, d_model: int, heads: int, kv_heads: int, d_mlp: int, aliases: tuple[str, ...]
) -> OfficialModel:
    return OfficialModel(
        architecture="GemmaForCausalLM",
        model_type="gemma",
        hf_config={
            "vocab_size": 256000,
            "hidden_size": d_model,
            "intermediate_size": d_mlp,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads,
            "head_dim": 256,
            "hidden_act": "gelu_pytorch_tanh",
            "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0,
            "tie_word_embeddings": True,
        },
        aliases=aliases,
    )


OFFICIAL: dict[str, OfficialModel] = {
    "google/gemma-2b": _gemma(18, 2048, 8, 1, 16384, ("gemma-2b",)),
    "google/gemma-7b": _gemma(28, 3072, 16, 16, 24576, ("gemma-7b",)),
    "google/gemma-2b-it": _gemma(18, 2048, 8, 1, 16384, ("gemma-2b-it",)),
    "google/gemma-7b-it": _gemma(28, 3072, 16, 16, 24576, ("gemma-7b-it",)),
}
