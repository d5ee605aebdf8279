"""OLMo-2 (Olmo2ForCausalLM): registered so that loading one fails loudly, naming the
architecture, instead of reporting an unknown model or giving wrong logits.

OLMo-2's block differs from every block HookedTransformer can build in two ways:
- no norm before attention or the MLP, but an RMSNorm on each of their outputs
  (`post_attention_layernorm`, `post_feedforward_layernorm`) and a final norm. Our
  `use_normalization_before_and_after` always keeps the pre-norms, and
  normalization_type=None removes the final norm and the post-norms too;
- q_norm and k_norm are one RMSNorm over the whole projection (n_heads * d_head for q,
  n_key_value_heads * d_head for k) before the split into heads; our `use_qk_norm`
  normalises each head over d_head.

The rest is declared as it would load once the core supports those two (Olmo2RMSNorm
multiplies by its weight in float32 and then casts, Gemma's order); the `refuse_block` check,
and the q/k norm weights for the classic convert_olmo2_weights, refuse first."""

from typing import Any

from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.pretrained.adapter import hf
from transformer_lens.pretrained.families._readers import default_rope_theta, grouped_kv_heads
from transformer_lens.pretrained.families.llama_like import (
    ATTENTION,
    LAYER,
    LLAMA_LIKE,
    ROPE_SCALING,
    optional_bias,
)
from transformer_lens.pretrained.official import OfficialModel

# OLMo-2 has no norms before attention or the MLP, only after them.
_PRE_NORMS = ("blocks.{i}.ln1.w", "blocks.{i}.ln2.w")

UNSUPPORTED = (
    "Olmo2ForCausalLM: OLMo-2's full-width q/k norm and post-only norms are not supported yet "
    "(HookedTransformerConfig has per-head q/k norms over d_head and keeps pre-norms whenever "
    "post-norms are on)"
)


def refuse_block(hf_config: Any) -> None:
    raise ValueError(f"{UNSUPPORTED}; cannot load {type(hf_config).__name__}")


def refuse_weight(weight: Tensor, cfg: HookedTransformerConfig) -> Tensor:
    raise ValueError(f"{UNSUPPORTED}; cannot convert a q/k norm of shape {tuple(weight.shape)}")


# Llama's table without pre-norms, with post-norms and q/k norms, and with the default
# rotary embedding only and Gemma's norm order (weigh in float32, then cast).
OLMO2 = LLAMA_LIKE.extend(
    architectures=("Olmo2ForCausalLM",),
    remove={
        "config": ROPE_SCALING,
        "fixed": ("rms_norm_cast_before_weight",),
        "weights": _PRE_NORMS,
    },
    checks=(refuse_block,),
    config={"n_key_value_heads": grouped_kv_heads, "rotary_base": default_rope_theta},
    fixed={"use_normalization_before_and_after": True, "use_qk_norm": True},
    weights={
        "blocks.{i}.attn.b_Q": optional_bias("q_proj", "n_heads"),
        "blocks.{i}.attn._b_K": optional_bias("k_proj", "n_key_value_heads"),
        "blocks.{i}.attn._b_V": optional_bias("v_proj", "n_key_value_heads"),
        "blocks.{i}.attn.b_O": optional_bias("o_proj"),
        "blocks.{i}.attn.q_norm.w": hf(f"{ATTENTION}.q_norm.weight", transform=refuse_weight),
        "blocks.{i}.attn.k_norm.w": hf(f"{ATTENTION}.k_norm.weight", transform=refuse_weight),
        "blocks.{i}.ln1_post.w": hf(f"{LAYER}.post_attention_layernorm.weight"),
        "blocks.{i}.ln2_post.w": hf(f"{LAYER}.post_feedforward_layernorm.weight"),
    },
    handled_fields={"attention_bias"},
)

ADAPTERS = (OLMO2,)

# No official names until OLMo-2 loads: a name that resolves should also load.
OFFICIAL: dict[str, OfficialModel] = {}
