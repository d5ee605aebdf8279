"""Phi-3 (Phi3ForCausalLM): the Llama-like block with Q, K and V fused into one `qkv_proj`
and the gate and up projections fused into one `gate_up_proj`, partial rotary when
partial_rotary_factor < 1, and, when the config sets sliding_window, a sliding window on
every layer (HF's eager and SDPA masks keep keys with key > query - window). Per-head K/V
(no n_key_value_heads) when every query head has its own key/value head, as for Llama.

Only the default rotary embedding is supported: "longrope" (called "su" in older configs;
Phi-3 128k and Phi-3.5) rescales each frequency by a per-dimension factor and switches
factors with the sequence length, which HookedTransformerConfig cannot express."""

from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.pretrained.adapter import Transform, heads_in, hf, transposed, view_only
from transformer_lens.pretrained.families._readers import (
    every_layer_local,
    grouped_kv_heads,
    has_local_layers,
    must_be_false,
    only_default_rope,
    rotary_dim_of,
    theta_of,
    window_of,
)
from transformer_lens.pretrained.families.llama_like import (
    ATTENTION,
    LAYER,
    LLAMA_LIKE,
    ROPE_SCALING,
)
from transformer_lens.pretrained.official import OfficialModel

_DEFAULT_ROPE = only_default_rope(
    supported="only the default rotary embedding is supported ('longrope', formerly 'su', "
    "scales each frequency by a per-dimension factor chosen by sequence length)"
)
rope_theta = theta_of(_DEFAULT_ROPE)
rotary_dim = rotary_dim_of(_DEFAULT_ROPE)


def _qkv_rows(cfg: HookedTransformerConfig, part: str) -> slice:
    """Rows of qkv_proj holding `part`: [q (n_heads * d_head); k; v (n_kv * d_head each)]."""
    query = cfg.n_heads * cfg.d_head
    kv = (cfg.n_key_value_heads or cfg.n_heads) * cfg.d_head
    return {"q": slice(0, query), "k": slice(query, query + kv), "v": slice(query + kv, None)}[part]


def qkv_part(part: str, n_heads_field: str) -> Transform:
    """qkv_proj [(n_heads + 2 * n_kv) * d_head, d_model] -> `part` as [heads, d_model, d_head]."""
    per_head = heads_in(n_heads_field)

    def transform(weight: Tensor, cfg: HookedTransformerConfig) -> Tensor:
        return per_head(weight[_qkv_rows(cfg, part)], cfg)

    transform.__name__ = f"qkv_part({part})"
    return view_only(transform)


def gate_up_part(part: int) -> Transform:
    """gate_up_proj [2 * d_mlp, d_model] -> half `part` (HF chunks 0: gate, 1: up) as
    [d_model, d_mlp]."""

    def transform(weight: Tensor, cfg: HookedTransformerConfig) -> Tensor:
        return transposed(weight.chunk(2, dim=0)[part], cfg)

    transform.__name__ = f"gate_up_part({part})"
    return view_only(transform)


QKV = f"{ATTENTION}.qkv_proj.weight"
GATE_UP = f"{LAYER}.mlp.gate_up_proj.weight"

# Llama's rope-scaling readers refuse partial rotary; Phi-3 has only the default rotary
# embedding (see _DEFAULT_ROPE), so those fields keep their defaults.
PHI3 = LLAMA_LIKE.extend(
    architectures=("Phi3ForCausalLM",),
    remove={"config": ROPE_SCALING},
    config={
        "n_key_value_heads": grouped_kv_heads,
        "rotary_base": rope_theta,
        "rotary_dim": rotary_dim,
        "use_local_attn": has_local_layers(every_layer_local),
        "window_size": window_of(every_layer_local),
        "attn_types": every_layer_local,
    },
    # HF's Phi-3 builds qkv_proj without a bias whatever this says: refuse True as ambiguous.
    checks=(must_be_false("attention_bias"),),
    weights={
        "blocks.{i}.attn.W_Q": hf(QKV, transform=qkv_part("q", "n_heads")),
        "blocks.{i}.attn._W_K": hf(QKV, transform=qkv_part("k", "n_key_value_heads")),
        "blocks.{i}.attn._W_V": hf(QKV, transform=qkv_part("v", "n_key_value_heads")),
        "blocks.{i}.mlp.W_gate": hf(GATE_UP, transform=gate_up_part(0)),
        "blocks.{i}.mlp.W_in": hf(GATE_UP, transform=gate_up_part(1)),
    },
    handled_fields={
        "attention_bias",
        # The official config.json names remote-code classes; we mirror HF's built-in Phi-3.
        "auto_map",
        "partial_rotary_factor",
        "sliding_window",
        # Read by "longrope" only, which is refused.
        "original_max_position_embeddings",
        # Dropout: no effect on logits.
        "resid_pdrop",
        "embd_pdrop",
    },
)

ADAPTERS = (PHI3,)


OFFICIAL: dict[str, OfficialModel] = {
    "microsoft/Phi-3-mini-4k-instruct": OfficialModel(
        architecture="Phi3ForCausalLM",
        model_type="phi3",
        hf_config={
            "vocab_size": 32064,
            "hidden_size": 3072,
            "intermediate_size": 8192,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "hidden_act": "silu",
            "max_position_embeddings": 4096,
            "original_max_position_embeddings": 4096,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "sliding_window": 2047,
            "tie_word_embeddings": False,
        },
        aliases=("phi-3",),
    ),
}
