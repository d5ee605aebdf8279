"""Llama 1/2/3.x: the Llama-like table, plus q/k/v/o biases when attention_bias is set, and
per-head K/V (no n_key_value_heads) when every query head has its own key/value head, as in
classic TransformerLens for Llama-1/2. MLP biases (mlp_bias) are refused: our gated MLP has
no gate or up bias."""

from transformer_lens.pretrained.families._readers import grouped_kv_heads, must_be_false
from transformer_lens.pretrained.families.llama_like import LLAMA_LIKE, optional_bias
from transformer_lens.pretrained.official import OfficialModel

LLAMA = LLAMA_LIKE.extend(
    architectures=("LlamaForCausalLM",),
    config={"n_key_value_heads": grouped_kv_heads},
    checks=(must_be_false("mlp_bias"),),
    weights={
        "blocks.{i}.attn.b_Q": optional_bias("q_proj", "n_heads"),
        "blocks.{i}.attn._b_K": optional_bias("k_proj", "n_key_value_heads"),
        "blocks.{i}.attn._b_V": optional_bias("v_proj", "n_key_value_heads"),
        "blocks.{i}.attn.b_O": optional_bias("o_proj"),
    },
    handled_fields={
        "attention_bias",
        "mlp_bias",
        # > 1 only made older transformers split each matmul into slices and sum them: the
        # same maths (transformers 5 ignores it), so every value is accepted.
        "pretraining_tp",
    },
)

ADAPTERS = (LLAMA,)

_LLAMA3_ROPE = {"rope_type": "llama3", "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}  # fmt: skip


def _llama(
    layers: int,
    d_model: int,
    heads: int,
    kv_heads: int,
    d_mlp: int,
    aliases: tuple[str, ...],
    vocab: int = 128256,
    context: int = 131072,
    rope_theta: float = 500000.0,
    rope_scaling_factor: float | None = None,
    head_dim: int = 128,
    tied: bool = False,
) -> OfficialModel:
    hf_config = {
        "vocab_size": vocab,
        "hidden_size": d_model,
        "intermediate_size": d_mlp,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": context,
        "rms_norm_eps": 1e-5,
        "rope_theta": rope_theta,
        "tie_word_embeddings": tied,
    }
    if rope_scaling_factor is not None:
        hf_config["rope_scaling"] = {**_LLAMA3_ROPE, "factor": rope_scaling_factor}
    return OfficialModel("LlamaForCausalLM", "llama", hf_config, aliases)


def _llama2(layers: int, d_model: int, heads: int, d_mlp: int, alias: str) -> OfficialModel:
    return _llama(layers, d_model, heads, heads, d_mlp, (alias,), vocab=32000, context=4096, rope_theta=10000.0)  # fmt: skip


def _llama3_8b(aliases: tuple[str, ...], rope_scaling_factor: float | None) -> OfficialModel:
    context = 8192 if rope_scaling_factor is None else 131072
    return _llama(32, 4096, 32, 8, 14336, aliases, context=context, rope_scaling_factor=rope_scaling_factor)  # fmt: skip


def _llama32(layers: int, d_model: int, heads: int, head_dim: int, alias: str) -> OfficialModel:
    return _llama(layers, d_model, heads, 8, 8192, (alias,), rope_scaling_factor=32.0, head_dim=head_dim, tied=True)  # fmt: skip


OFFICIAL: dict[str, OfficialModel] = {
    "meta-llama/Llama-2-7b-hf": _llama2(32, 4096, 32, 11008, "Llama-2-7b"),
    "meta-llama/Llama-2-13b-hf": _llama2(40, 5120, 40, 13824, "Llama-2-13b"),
    "meta-llama/Meta-Llama-3-8B": _llama3_8b(("Meta-Llama-3-8B", "llama-3-8b"), None),
    "meta-llama/Meta-Llama-3-8B-Instruct": _llama3_8b(("Meta-Llama-3-8B-Instruct", "llama-3-8b-instruct"), None),
    "meta-llama/Llama-3.1-8B": _llama3_8b(("Llama-3.1-8B",), 8.0),
    "meta-llama/Llama-3.1-8B-Instruct": _llama3_8b(("Llama-3.1-8B-Instruct",), 8.0),
    "meta-llama/Llama-3.2-1B": _llama32(16, 2048, 32, 64, "llama-3.2-1b"),
    "meta-llama/Llama-3.2-1B-Instruct": _llama32(16, 2048, 32, 64, "llama-3.2-1b-instruct"),
    "meta-llama/Llama-3.2-3B": _llama32(28, 3072, 24, 128, "llama-3.2-3b"),
    "meta-llama/Llama-3.2-3B-Instruct": _llama32(28, 3072, 24, 128, "llama-3.2-3b-instruct"),
}  # fmt: skip
