"""GPT-NeoX (Pythia): parallel attention and MLP, partial rotary, LayerNorm, untied unembedding.

HF fuses Q, K and V into one `query_key_value` projection whose output axis is laid out per
head, [heads, 3, d_head] (it views the output as [..., heads, 3 * d_head] and chunks the last
axis), not [3, heads, d_head] as GPT-2's c_attn is. HF's eager attention matches ours: scores
in the model dtype scaled by d_head ** -0.5, softmax in float32, cast back.
"""

from typing import Any

from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.pretrained.adapter import (
    Adapter,
    Transform,
    heads_out,
    hf,
    transposed,
    view_only,
    zeros,
)
from transformer_lens.pretrained.families._readers import (
    activation,
    head_dim,
    only_default_rope,
    rotary_dim_of,
    theta_of,
)
from transformer_lens.pretrained.official import OfficialModel

# transformers 4.x names the base rotary_emb_base and the rotated fraction rotary_pct.
_DEFAULT_ROPE = only_default_rope(
    base_field="rotary_emb_base", supported="GPT-NeoX supports only the default rotary embedding"
)
_rotary_base = theta_of(_DEFAULT_ROPE)
_rotary_dim = rotary_dim_of(_DEFAULT_ROPE, fraction_field="rotary_pct")


def _require_attention_bias(hf_config: Any) -> None:
    # Our weight map reads the Q/K/V and output biases; a model without them would fail to
    # load with missing keys, so say why up front.
    if not getattr(hf_config, "attention_bias", True):
        raise ValueError(f"{type(hf_config).__name__}.attention_bias=False is not supported")


def per_head_qkv_part(part: int) -> Transform:
    """query_key_value weight [heads * 3 * d_head, d_model] -> part (0 Q, 1 K, 2 V) as
    [heads, d_model, d_head] (a view)."""

    def transform(weight: Tensor, cfg: HookedTransformerConfig) -> Tensor:
        per_head = weight.view(cfg.n_heads, 3, cfg.d_head, cfg.d_model)
        return per_head[:, part].transpose(1, 2)

    transform.__name__ = f"per_head_qkv_part({part})"
    return view_only(transform)


def per_head_qkv_bias_part(part: int) -> Transform:
    """query_key_value bias [heads * 3 * d_head] -> part (0 Q, 1 K, 2 V) as [heads, d_head]."""

    def transform(bias: Tensor, cfg: HookedTransformerConfig) -> Tensor:
        return bias.view(cfg.n_heads, 3, cfg.d_head)[:, part]

    transform.__name__ = f"per_head_qkv_bias_part({part})"
    return view_only(transform)


LAYER = "gpt_neox.layers.{i}"
QKV = f"{LAYER}.attention.query_key_value"

NEOX = Adapter(
    architectures=("GPTNeoXForCausalLM",),
    config={
        "d_model": "hidden_size",
        "d_head": head_dim,
        "n_heads": "num_attention_heads",
        "d_mlp": "intermediate_size",
        "n_layers": "num_hidden_layers",
        "n_ctx": "max_position_embeddings",
        "eps": "layer_norm_eps",
        "d_vocab": "vocab_size",
        "act_fn": activation("hidden_act"),
        "parallel_attn_mlp": "use_parallel_residual",
        "rotary_dim": _rotary_dim,
        "rotary_base": _rotary_base,
    },
    checks=(_require_attention_bias,),
    fixed={
        "normalization_type": "LN",
        "positional_embedding_type": "rotary",
    },
    weights={
        "embed.W_E": hf("gpt_neox.embed_in.weight"),
        "blocks.{i}.ln1.w": hf(f"{LAYER}.input_layernorm.weight"),
        "blocks.{i}.ln1.b": hf(f"{LAYER}.input_layernorm.bias"),
        "blocks.{i}.ln2.w": hf(f"{LAYER}.post_attention_layernorm.weight"),
        "blocks.{i}.ln2.b": hf(f"{LAYER}.post_attention_layernorm.bias"),
        **{
            f"blocks.{{i}}.attn.W_{name}": hf(f"{QKV}.weight", transform=per_head_qkv_part(part))
            for part, name in enumerate("QKV")
        },
        **{
            f"blocks.{{i}}.attn.b_{name}": hf(f"{QKV}.bias", transform=per_head_qkv_bias_part(part))
            for part, name in enumerate("QKV")
        },
        "blocks.{i}.attn.W_O": hf(f"{LAYER}.attention.dense.weight", transform=heads_out),
        "blocks.{i}.attn.b_O": hf(f"{LAYER}.attention.dense.bias"),
        "blocks.{i}.mlp.W_in": hf(f"{LAYER}.mlp.dense_h_to_4h.weight", transform=transposed),
        "blocks.{i}.mlp.b_in": hf(f"{LAYER}.mlp.dense_h_to_4h.bias"),
        "blocks.{i}.mlp.W_out": hf(f"{LAYER}.mlp.dense_4h_to_h.weight", transform=transposed),
        "blocks.{i}.mlp.b_out": hf(f"{LAYER}.mlp.dense_4h_to_h.bias"),
        "ln_final.w": hf("gpt_neox.final_layer_norm.weight"),
        "ln_final.b": hf("gpt_neox.final_layer_norm.bias"),
        # embed_out in checkpoints, lm_head once transformers 5 renames it; the embedding
        # when tie_word_embeddings left the head out of a saved checkpoint.
        "unembed.W_U": hf(
            "embed_out.weight", "lm_head.weight", "gpt_neox.embed_in.weight", transform=transposed
        ),
        "unembed.b_U": zeros("d_vocab_out"),
    },
    handled_fields=frozenset(
        {
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "hidden_act",
            "max_position_embeddings",
            "layer_norm_eps",
            "use_parallel_residual",
            "attention_bias",
            "rope_parameters",
            "rope_scaling",
            "rotary_pct",
            "rotary_emb_base",
            # Dropout, and the GPTNeoXForSequenceClassification head: no effect on logits.
            "hidden_dropout",
            "classifier_dropout",
        }
    ),
)

ADAPTERS = (NEOX,)


def _pythia(
    layers: int, d_model: int, heads: int, d_mlp: int, vocab: int, aliases: tuple[str, ...]
) -> OfficialModel:
    return OfficialModel(
        architecture="GPTNeoXForCausalLM",
        model_type="gpt_neox",
        hf_config={
            "vocab_size": vocab,
            "hidden_size": d_model,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "intermediate_size": d_mlp,
            "hidden_act": "gelu",
            "max_position_embeddings": 2048,
            "layer_norm_eps": 1e-5,
            "rotary_pct": 0.25,
            "rotary_emb_base": 10000,
            "use_parallel_residual": True,
            "tie_word_embeddings": False,
        },
        aliases=aliases,
    )


_SIZES = {  # name: (layers, d_model, heads, d_mlp, vocab, former name)
    "70m": (6, 512, 8, 2048, 50304, "19m"),
    "160m": (12, 768, 12, 3072, 50304, "125m"),
    "410m": (24, 1024, 16, 4096, 50304, "350m"),
    "1.4b": (24, 2048, 16, 8192, 50304, "1.3b"),
    "6.9b": (32, 4096, 32, 16384, 50432, "6.7b"),
}

OFFICIAL: dict[str, OfficialModel] = {
    f"EleutherAI/pythia-{size}{suffix}": _pythia(
        layers,
        d_model,
        heads,
        d_mlp,
        vocab,
        (f"pythia-{size}{suffix}", f"EleutherAI/pythia-{old}{suffix}", f"pythia-{old}{suffix}"),
    )
    for size, (layers, d_model, heads, d_mlp, vocab, old) in _SIZES.items()
    for suffix in ("", "-deduped")
}
