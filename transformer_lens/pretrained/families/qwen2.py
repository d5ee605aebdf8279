"""Qwen2: the Llama-like table with q/k/v biases (no output bias), tied embeddings on the
small sizes, and sliding-window attention on the layers HF's layer_types marks (from
max_window_layers on when use_sliding_window is set). Official checkpoints prepend no BOS."""

from transformer_lens.pretrained.adapter import head_bias, hf
from transformer_lens.pretrained.families._readers import (
    attention_types,
    has_local_layers,
    window_of,
)
from transformer_lens.pretrained.families.llama_like import ATTENTION, LLAMA_LIKE
from transformer_lens.pretrained.official import OfficialModel

QWEN2 = LLAMA_LIKE.extend(
    architectures=("Qwen2ForCausalLM",),
    config={
        "use_local_attn": has_local_layers(attention_types),
        "window_size": window_of(attention_types),
        "attn_types": attention_types,
    },
    fixed={"default_prepend_bos": False},
    weights={
        "blocks.{i}.attn.b_Q": hf(f"{ATTENTION}.q_proj.bias", transform=head_bias("n_heads")),
        "blocks.{i}.attn._b_K": hf(
            f"{ATTENTION}.k_proj.bias", transform=head_bias("n_key_value_heads")
        ),
        "blocks.{i}.attn._b_V": hf(
            f"{ATTENTION}.v_proj.bias", transform=head_bias("n_key_value_heads")
        ),
    },
    handled_fields={"use_sliding_window", "sliding_window", "max_window_layers", "layer_types"},
)

ADAPTERS = (QWEN2,)


def _qwen2(
    layers: int,
    d_model: int,
    heads: int,
    kv_heads: int,
    d_mlp: int,
    aliases: tuple[str, ...],
    vocab: int = 151936,
    tied: bool = True,
) -> OfficialModel:
    return OfficialModel(
        architecture="Qwen2ForCausalLM",
        model_type="qwen2",
        hf_config={
            "vocab_size": vocab,
            "hidden_size": d_model,
            "intermediate_size": d_mlp,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads,
            "hidden_act": "silu",
            "max_position_embeddings": 131072,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            "use_sliding_window": False,
            "sliding_window": 131072,
            "max_window_layers": layers,
            "tie_word_embeddings": tied,
        },
        aliases=aliases,
    )


_0_5B = (24, 896, 14, 2, 4864)
_1_5B = (28, 1536, 12, 2, 8960)
_7B = (28, 3584, 28, 4, 18944)

OFFICIAL: dict[str, OfficialModel] = {
    "Qwen/Qwen2-0.5B": _qwen2(*_0_5B, ("qwen2-0.5b",)),
    "Qwen/Qwen2-1.5B": _qwen2(*_1_5B, ("qwen2-1.5b",)),
    "Qwen/Qwen2-7B": _qwen2(*_7B, ("qwen2-7b",), vocab=152064, tied=False),
}
