"""GPT-2: learned positions, LayerNorm with biases, a tanh-GELU MLP and a tied unembedding.

HF stores GPT-2's projections as Conv1D, whose weights are [in, out] (our layout already):
c_attn is [d_model, 3 * d_model] with Q, K and V side by side, each heads-major.
"""

from typing import Any

from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.pretrained.adapter import (
    Adapter,
    Transform,
    hf,
    transposed,
    unchanged,
    view_only,
    zeros,
)
from transformer_lens.pretrained.families._readers import activation, must_be_false
from transformer_lens.pretrained.official import OfficialModel


def _d_head(hf_config: Any) -> int:
    return hf_config.n_embd // hf_config.n_head


def _d_mlp(hf_config: Any) -> int:
    return hf_config.n_inner if hf_config.n_inner is not None else 4 * hf_config.n_embd


def _refuse_upcast_attention(hf_config: Any) -> None:
    # HF then computes scores and softmax in float32 whatever the model dtype; our attention
    # computes scores in the model dtype, so half-precision results would differ.
    if getattr(hf_config, "reorder_and_upcast_attn", False):
        raise ValueError(
            f"{type(hf_config).__name__}.reorder_and_upcast_attn=True is not supported "
            "(HF computes attention scores in float32; ours uses the model dtype)"
        )


# ----- Conv1D transforms: HF [in, out] tensors -> ours ---------------------------------
def fused_qkv_part(part: int) -> Transform:
    """c_attn weight [d_model, 3 * d_model] -> part (0 Q, 1 K, 2 V) as [heads, d_model, d_head]."""

    def transform(weight: Tensor, cfg: HookedTransformerConfig) -> Tensor:
        width = cfg.n_heads * cfg.d_head
        block = weight[:, part * width : (part + 1) * width]
        return block.reshape(cfg.d_model, cfg.n_heads, cfg.d_head).permute(1, 0, 2)

    transform.__name__ = f"fused_qkv_part({part})"
    return Transform(transform)  # a slice of columns reshaped: a copy, not a view


def fused_qkv_bias_part(part: int) -> Transform:
    """c_attn bias [3 * d_model] -> part (0 Q, 1 K, 2 V) as [heads, d_head]."""

    def transform(bias: Tensor, cfg: HookedTransformerConfig) -> Tensor:
        width = cfg.n_heads * cfg.d_head
        return bias[part * width : (part + 1) * width].reshape(cfg.n_heads, cfg.d_head)

    transform.__name__ = f"fused_qkv_bias_part({part})"
    return view_only(transform)


@view_only
def conv1d_heads_out(weight: Tensor, cfg: HookedTransformerConfig) -> Tensor:
    """c_proj weight [heads * d_head, d_model] -> [heads, d_head, d_model] (a view)."""
    return weight.view(cfg.n_heads, cfg.d_head, cfg.d_model)


def _layer(suffix: str) -> tuple[str, str]:
    """The GPT2LMHeadModel key, and the bare GPT2Model key of the original OpenAI checkpoints."""
    return f"transformer.h.{{i}}.{suffix}", f"h.{{i}}.{suffix}"


def _top(suffix: str) -> tuple[str, str]:
    return f"transformer.{suffix}", suffix


GPT2 = Adapter(
    architectures=("GPT2LMHeadModel",),
    config={
        "d_model": "n_embd",
        "d_head": _d_head,
        "n_heads": "n_head",
        "d_mlp": _d_mlp,
        "n_layers": "n_layer",
        "n_ctx": "n_positions",
        "eps": "layer_norm_epsilon",
        "d_vocab": "vocab_size",
        "act_fn": activation("activation_function"),
        "use_attn_scale": "scale_attn_weights",
        "scale_attn_by_inverse_layer_idx": "scale_attn_by_inverse_layer_idx",
    },
    checks=(_refuse_upcast_attention, must_be_false("add_cross_attention")),
    fixed={
        "normalization_type": "LN",
        "positional_embedding_type": "standard",
    },
    weights={
        "embed.W_E": hf(*_top("wte.weight")),
        "pos_embed.W_pos": hf(*_top("wpe.weight")),
        "blocks.{i}.ln1.w": hf(*_layer("ln_1.weight")),
        "blocks.{i}.ln1.b": hf(*_layer("ln_1.bias")),
        "blocks.{i}.ln2.w": hf(*_layer("ln_2.weight")),
        "blocks.{i}.ln2.b": hf(*_layer("ln_2.bias")),
        **{
            f"blocks.{{i}}.attn.W_{name}": hf(
                *_layer("attn.c_attn.weight"), transform=fused_qkv_part(part)
            )
            for part, name in enumerate("QKV")
        },
        **{
            f"blocks.{{i}}.attn.b_{name}": hf(
                *_layer("attn.c_attn.bias"), transform=fused_qkv_bias_part(part)
            )
            for part, name in enumerate("QKV")
        },
        "blocks.{i}.attn.W_O": hf(*_layer("attn.c_proj.weight"), transform=conv1d_heads_out),
        "blocks.{i}.attn.b_O": hf(*_layer("attn.c_proj.bias")),
        "blocks.{i}.mlp.W_in": hf(*_layer("mlp.c_fc.weight"), transform=unchanged),
        "blocks.{i}.mlp.b_in": hf(*_layer("mlp.c_fc.bias")),
        "blocks.{i}.mlp.W_out": hf(*_layer("mlp.c_proj.weight"), transform=unchanged),
        "blocks.{i}.mlp.b_out": hf(*_layer("mlp.c_proj.bias")),
        "ln_final.w": hf(*_top("ln_f.weight")),
        "ln_final.b": hf(*_top("ln_f.bias")),
        "unembed.W_U": hf("lm_head.weight", *_top("wte.weight"), transform=transposed),
        "unembed.b_U": zeros("d_vocab_out"),
    },
    handled_fields=frozenset(
        {
            "vocab_size",
            "n_embd",
            "n_layer",
            "n_head",
            "n_inner",
            "n_positions",
            "layer_norm_epsilon",
            "activation_function",
            "scale_attn_weights",
            "scale_attn_by_inverse_layer_idx",
            "reorder_and_upcast_attn",
            "add_cross_attention",
            # No effect on the forward pass: dropout, the GPT2DoubleHeadsModel summary head,
            # n_ctx (old alias of n_positions), fields GPT-2 inherited from OpenAI GPT.
            "resid_pdrop",
            "embd_pdrop",
            "attn_pdrop",
            "summary_type",
            "summary_use_proj",
            "summary_activation",
            "summary_proj_to_labels",
            "summary_first_dropout",
            "n_ctx",
            "n_special",
            "predict_special_tokens",
            "task_specific_params",
        }
    ),
)

ADAPTERS = (GPT2,)


def _gpt2(layers: int, d_model: int, heads: int, aliases: tuple[str, ...]) -> OfficialModel:
    return OfficialModel(
        architecture="GPT2LMHeadModel",
        model_type="gpt2",
        hf_config={
            "vocab_size": 50257,
            "n_positions": 1024,
            "n_embd": d_model,
            "n_layer": layers,
            "n_head": heads,
            "activation_function": "gelu_new",
            "layer_norm_epsilon": 1e-5,
            "tie_word_embeddings": True,
        },
        aliases=aliases,
    )


OFFICIAL: dict[str, OfficialModel] = {
    "gpt2": _gpt2(12, 768, 12, ("gpt2-small",)),
    "gpt2-medium": _gpt2(24, 1024, 16, ()),
    "gpt2-large": _gpt2(36, 1280, 20, ()),
    "gpt2-xl": _gpt2(48, 1600, 25, ()),
    "distilgpt2": _gpt2(6, 768, 12, ("distillgpt2", "distill-gpt2", "distil-gpt2", "gpt2-xs")),
}
