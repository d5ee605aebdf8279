"""The shared table of Llama-style decoders (Llama, Mistral, Qwen2, Qwen3, Phi-3, Gemma,
OLMo-2): pre-norm RMSNorm blocks, rotary attention with grouped keys/values, a SiLU-gated MLP
and an RMS final norm. The family modules extend it with their deltas; the config readers it
points at live in `_readers`."""

from transformer_lens.pretrained.adapter import (
    Adapter,
    ConfigValue,
    WeightSource,
    head_bias,
    heads_in,
    heads_out,
    hf,
    optional,
    transposed,
    zeros,
)
from transformer_lens.pretrained.families._readers import (
    ROPE_SCALING_PARAMETERS,
    capped_context,
    head_dim,
    rope_scaling_value,
    rope_theta,
    rope_type_is,
)

LAYER = "model.layers.{i}"
ATTENTION = f"{LAYER}.self_attn"

# Our rope-scaling fields (llama3's scaling by parts, linear scaling): the families with
# only the default rotary embedding remove them.
ROPE_SCALING: dict[str, ConfigValue] = {
    "use_NTK_by_parts_rope": rope_type_is("llama3"),
    **{
        field: rope_scaling_value("llama3", field)
        for field in ROPE_SCALING_PARAMETERS["llama3"].values()
    },
    "rotary_linear_scaling_factor": rope_scaling_value("linear", "rotary_linear_scaling_factor"),
}


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
        **ROPE_SCALING,
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
