"""tiny_hf(family, **overrides): a seeded random Hugging Face model of one family, built
from transformers' own classes with the tiny sizes below (2 layers, hidden 64, vocabulary
101, eager attention, float32). `overrides` are config fields; a test that depends on a
value passes it, so that the table can change without changing what the test means."""

import copy
from typing import Any

import torch

VOCAB = 101

_ALL = dict(vocab_size=VOCAB, attn_implementation="eager")
# Llama-like families: 8 query heads on 2 key/value heads; d_head 8 unless given.
_LLAMA_LIKE = dict(
    _ALL,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=8,
    num_key_value_heads=2,
    max_position_embeddings=64,
)
# The official defaults of these fields are sized for the full models: head_dim 256 or 128,
# query_pre_attn_scalar 256, pad and eos ids beyond the tiny vocabulary.
_SMALL_IDS = dict(pad_token_id=None, eos_token_id=2)

# family: (config class, model class, tiny config fields)
FAMILIES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "gpt2": (
        "GPT2Config",
        "GPT2LMHeadModel",
        dict(_ALL, n_embd=64, n_layer=2, n_head=4, n_positions=64),
    ),
    "neox": (
        "GPTNeoXConfig",
        "GPTNeoXForCausalLM",
        dict(
            _ALL,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=128,
            max_position_embeddings=64,
            rotary_pct=0.25,
        ),
    ),
    "llama": ("LlamaConfig", "LlamaForCausalLM", _LLAMA_LIKE),
    "mistral": ("MistralConfig", "MistralForCausalLM", _LLAMA_LIKE),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", _LLAMA_LIKE),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(_LLAMA_LIKE, head_dim=16)),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", dict(_LLAMA_LIKE, head_dim=16)),
    "gemma2": (
        "Gemma2Config",
        "Gemma2ForCausalLM",
        dict(_LLAMA_LIKE, head_dim=16, query_pre_attn_scalar=16),
    ),
    "gemma3": (
        "Gemma3TextConfig",
        "Gemma3ForCausalLM",
        dict(_LLAMA_LIKE, head_dim=16, query_pre_attn_scalar=16),
    ),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", dict(_LLAMA_LIKE, **_SMALL_IDS)),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", dict(_LLAMA_LIKE, **_SMALL_IDS)),
    # Not supported here: for the tests of the refusal.
    "opt": (
        "OPTConfig",
        "OPTForCausalLM",
        dict(
            _ALL,
            hidden_size=64,
            word_embed_proj_dim=64,
            ffn_dim=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=64,
        ),
    ),
}


@torch.no_grad()
def randomize_norms(model: torch.nn.Module, std: float = 0.5) -> None:
    """Random norm weights and all biases, so that a wrong 1 + w, a skipped norm or a
    dropped bias shows (HF initialises norms to 1 or 0 and biases to 0)."""
    generator = torch.Generator().manual_seed(1)
    for name, param in model.named_parameters():
        module_name = name.split(".")[-2] if "." in name else name
        if "norm" in name or "ln" in module_name or name.endswith(".bias"):
            param.copy_(torch.randn(param.shape, generator=generator) * std)


def _family(family: str) -> tuple[str, str, dict[str, Any]]:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[family]


def tiny_hf_config(family: str, **overrides: Any) -> Any:
    """The family's tiny HF config, with `overrides` applied."""
    import transformers

    config_class, _, fields = _family(family)
    # A copy: HF configs may keep, and later change, a dict they were given (rope_parameters).
    return getattr(transformers, config_class)(**copy.deepcopy({**fields, **overrides}))


def model_class_name(family: str) -> str:
    return _family(family)[1]


def tiny_hf(
    family: str, *, seed: int = 0, random_norms: bool = True, **overrides: Any
) -> torch.nn.Module:
    """A random HF model of the family (eval mode) from `torch.manual_seed(seed)`. With
    `random_norms`, norm weights and biases are random too (HF initialises them to 1 and
    0), so that a wrong 1 + w, a skipped norm or a dropped bias shows."""
    import transformers

    config = tiny_hf_config(family, **overrides)
    torch.manual_seed(seed)
    model = getattr(transformers, model_class_name(family))(config).eval()
    if random_norms:
        randomize_norms(model)
    return model
