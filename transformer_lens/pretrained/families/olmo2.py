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
multiplies by its weight in float32 and then casts, Gemma's order); the `_block` reader,
and the q/k norm weights for the classic convert_olmo2_weights, refuse first."""

from typing import Any

from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.pretrained.adapter import Adapter, heads_in, heads_out, hf, transposed, zeros
from transformer_lens.pretrained.families.hf_config import default_rope_theta, head_dim
from transformer_lens.pretrained.families.llama_like import (
    ATTENTION,
    LAYER,
    capped_context,
    grouped_kv_heads,
    optional_bias,
)
from transformer_lens.pretrained.official import OfficialModel

UNSUPPORTED = (
    "Olmo2ForCausalLM: OLMo-2's full-width q/k norm and post-only norms are not supported yet "
    "(HookedTransformerConfig has per-head q/k norms over d_head and keeps pre-norms whenever "
    "post-norms are on)"
)


def refuse_block(hf_config: Any) -> None:
    raise ValueError(f"{UNSUPPORTED}; cannot load {type(hf_config).__name__}")


def refuse_weight(weight: Tensor, cfg: HookedTransformerConfig) -> Tensor:
    raise ValueError(f"{UNSUPPORTED}; cannot convert a q/k norm of shape {tuple(weight.shape)}")


OLMO2 = Adapter(
    architectures=("Olmo2ForCausalLM",),
    config={
        "_block": refuse_block,
        "d_model": "hidden_size",
        "d_head": head_dim,
        "n_heads": "num_attention_heads",
        "n_key_value_heads": grouped_kv_heads,
        "d_mlp": "intermediate_size",
        "n_layers": "num_hidden_layers",
        "n_ctx": capped_context,
        "eps": "rms_norm_eps",
        "d_vocab": "vocab_size",
        "act_fn": "hidden_act",
        "rotary_base": default_rope_theta,
    },
    fixed={
        "normalization_type": "RMS",
        "use_normalization_before_and_after": True,
        "use_qk_norm": True,
        "positional_embedding_type": "rotary",
        "gated_mlp": True,
        "final_rms": True,
    },
    weights={
        "embed.W_E": hf("model.embed_tokens.weight"),
        "blocks.{i}.attn.W_Q": hf(f"{ATTENTION}.q_proj.weight", transform=heads_in("n_heads")),
        "blocks.{i}.attn._W_K": hf(
            f"{ATTENTION}.k_proj.weight", transform=heads_in("n_key_value_heads")
        ),
        "blocks.{i}.attn._W_V": hf(
            f"{ATTENTION}.v_proj.weight", transform=heads_in("n_key_value_heads")
        ),
        "blocks.{i}.attn.W_O": hf(f"{ATTENTION}.o_proj.weight", transform=heads_out),
        "blocks.{i}.attn.b_Q": optional_bias("q_proj", "n_heads"),
        "blocks.{i}.attn._b_K": optional_bias("k_proj", "n_key_value_heads"),
        "blocks.{i}.attn._b_V": optional_bias("v_proj", "n_key_value_heads"),
        "blocks.{i}.attn.b_O": optional_bias("o_proj"),
        "blocks.{i}.attn.q_norm.w": hf(f"{ATTENTION}.q_norm.weight", transform=refuse_weight),
        "blocks.{i}.attn.k_norm.w": hf(f"{ATTENTION}.k_norm.weight", transform=refuse_weight),
        "blocks.{i}.ln1_post.w": hf(f"{LAYER}.post_attention_layernorm.weight"),
        "blocks.{i}.mlp.W_gate": hf(f"{LAYER}.mlp.gate_proj.weight", transform=transposed),
        "blocks.{i}.mlp.W_in": hf(f"{LAYER}.mlp.up_proj.weight", transform=transposed),
        "blocks.{i}.mlp.W_out": hf(f"{LAYER}.mlp.down_proj.weight", transform=transposed),
        "blocks.{i}.mlp.b_in": zeros("d_mlp"),
        "blocks.{i}.mlp.b_out": zeros("d_model"),
        "blocks.{i}.ln2_post.w": hf(f"{LAYER}.post_feedforward_layernorm.weight"),
        "ln_final.w": hf("model.norm.weight"),
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
            "attention_bias",
        }
    ),  # fmt: skip
)

ADAPTERS = (OLMO2,)

# No official names until OLMo-2 loads: a name that resolves should also load.
OFFICIAL: dict[str, OfficialModel] = {}
