"""Qwen3 (dense): the Llama-like table plus an RMSNorm on each query and key head, applied
before rotary as HF does, with Llama's cast-then-weigh order. head_dim is given explicitly
(16 x 128 != 1024 on Qwen3-0.6B). Official checkpoints have no attention biases; a config
with attention_bias=True gets q/k/v/o biases, the query/key bias inside the q/k norm as in HF.
Sliding-window layers follow HF's layer_types (all global on the official checkpoints)."""

from transformer_lens.pretrained.adapter import hf
from transformer_lens.pretrained.families._readers import (
    attention_types,
    has_local_layers,
    window_of,
)
from transformer_lens.pretrained.families.llama_like import ATTENTION, LLAMA_LIKE, optional_bias
from transformer_lens.pretrained.official import OfficialModel

QWEN3 = LLAMA_LIKE.extend(
    architectures=("Qwen3ForCausalLM",),
    config={
        "use_local_attn": has_local_layers(attention_types),
        "window_size": window_of(attention_types),
        "attn_types": attention_types,
    },
    # Qwen's tokenizers have no BOS token (as for Qwen2).
    fixed={"use_qk_norm": True, "default_prepend_bos": False},
    weights={
        "blocks.{i}.attn.q_norm.w": hf(f"{ATTENTION}.q_norm.weight"),
        "blocks.{i}.attn.k_norm.w": hf(f"{ATTENTION}.k_norm.weight"),
        "blocks.{i}.attn.b_Q": optional_bias("q_proj", "n_heads"),
        "blocks.{i}.attn._b_K": optional_bias("k_proj", "n_key_value_heads"),
        "blocks.{i}.attn._b_V": optional_bias("v_proj", "n_key_value_heads"),
        "blocks.{i}.attn.b_O": optional_bias("o_proj"),
    },
    handled_fields={
        "attention_bias",
        "use_sliding_window",  # layer_types already says which layers slide
        "sliding_window",
        "max_window_layers",
        "layer_types",
    },
)

ADAPTERS = (QWEN3,)


def _qwen3(
    layers: int, d_model: int, heads: int, d_mlp: int, tied: bool, aliases: tuple[str, ...]
) -> OfficialModel:
    return OfficialModel(
        architecture="Qwen3ForCausalLM",
        model_type="qwen3",
        hf_config={
            "vocab_size": 151936,
            "hidden_size": d_model,
            "intermediate_size": d_mlp,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "hidden_act": "silu",
            "max_position_embeddings": 40960,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            "use_sliding_window": False,
            "max_window_layers": layers,
            "tie_word_embeddings": tied,
        },
        aliases=aliases,
    )


OFFICIAL: dict[str, OfficialModel] = {
    "Qwen/Qwen3-0.6B": _qwen3(28, 1024, 16, 3072, True, ("qwen3-0.6b",)),
    "Qwen/Qwen3-1.7B": _qwen3(28, 2048, 16, 6144, True, ("qwen3-1.7b",)),
    "Qwen/Qwen3-4B": _qwen3(36, 2560, 32, 9728, True, ("qwen3-4b",)),
    "Qwen/Qwen3-8B": _qwen3(36, 4096, 32, 12288, False, ("qwen3-8b",)),
    "Qwen/Qwen3-14B": _qwen3(40, 5120, 40, 17408, False, ("qwen3-14b",)),
}
