"""The family test matrix: one row per model family. A new family is one adapter file
plus one row here. Each row builds tiny random HF models (eager attention, float32) in the
attention variants the family allows: multi-head, grouped and multi-query."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from tests.helpers import randomize_norms

VOCAB = 101


@dataclass(frozen=True)
class FamilyRow:
    name: str
    official_name: str  # loaded with hf_model=, so the name only labels the model
    build_config: Callable[..., Any]
    model_class: str
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    # max |logit diff| against HF in bfloat16 (0.0: bit for bit); None: no bfloat16 row
    bf16_tolerance: float | None = None


def _config(class_name: str, **fields: Any) -> Any:
    import transformers

    return getattr(transformers, class_name)(**fields)


def llama_like(class_name: str, **extra: Any) -> Callable[..., Any]:
    def build(**variant: Any) -> Any:
        fields = dict(
            vocab_size=VOCAB,
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=8,
            max_position_embeddings=64,
            attn_implementation="eager",
        )
        fields.update(extra)
        fields.update(variant)
        return _config(class_name, **fields)

    return build


GROUPED = {"mha": {"num_key_value_heads": 8}, "gqa": {"num_key_value_heads": 2}, "mqa": {"num_key_value_heads": 1}}  # fmt: skip

ROWS = [
    FamilyRow(
        "gpt2",
        "gpt2",
        lambda **v: _config("GPT2Config", vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=64, attn_implementation="eager", **v),
        "GPT2LMHeadModel",
        {"mha": {}},
        0.0,
    ),
    FamilyRow(
        "neox",
        "EleutherAI/pythia-70m",
        lambda **v: _config("GPTNeoXConfig", vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, max_position_embeddings=64, rotary_pct=0.25, attn_implementation="eager", **v),
        "GPTNeoXForCausalLM",
        {"mha": {}, "sequential": {"use_parallel_residual": False}},
        0.0,
    ),
    FamilyRow("llama", "meta-llama/Llama-3.2-1B", llama_like("LlamaConfig", head_dim=8), "LlamaForCausalLM", GROUPED, 0.0),
    FamilyRow(
        "mistral",
        "mistralai/Mistral-7B-v0.1",
        llama_like("MistralConfig", head_dim=8, sliding_window=4),  # shorter than the test sequence
        "MistralForCausalLM",
        GROUPED,
        0.0,
    ),
    FamilyRow("qwen2", "Qwen/Qwen2-0.5B", llama_like("Qwen2Config", tie_word_embeddings=True), "Qwen2ForCausalLM", GROUPED, 0.0),
    FamilyRow("gemma", "google/gemma-2b", llama_like("GemmaConfig", head_dim=16), "GemmaForCausalLM", GROUPED, 0.0),
    FamilyRow(
        "gemma2",
        "google/gemma-2-2b",
        llama_like("Gemma2Config", head_dim=16, sliding_window=4, query_pre_attn_scalar=16, attn_logit_softcapping=5.0, final_logit_softcapping=3.0),
        "Gemma2ForCausalLM",
        GROUPED,
        0.0,
    ),
    FamilyRow(
        "gemma3",
        "google/gemma-3-1b-pt",
        llama_like(
            "Gemma3TextConfig",
            head_dim=16,
            sliding_window=4,
            query_pre_attn_scalar=16,
            final_logit_softcapping=3.0,
            layer_types=["sliding_attention", "full_attention"],
            # Far-apart bases, so that swapping the local and the global one shows.
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 50.0},
                "full_attention": {"rope_type": "default", "rope_theta": 100000.0},
            },
        ),
        "Gemma3ForCausalLM",
        {**GROUPED, "uncapped": {"num_key_value_heads": 1, "final_logit_softcapping": None}},
        0.0,
    ),
    FamilyRow(
        "qwen3",
        "Qwen/Qwen3-0.6B",
        llama_like("Qwen3Config", head_dim=16),  # 8 heads x 16 != hidden 64: head_dim is explicit
        "Qwen3ForCausalLM",
        {
            **GROUPED,
            "sliding": {"num_key_value_heads": 2, "use_sliding_window": True, "sliding_window": 4, "max_window_layers": 1},
            "tied": {"num_key_value_heads": 2, "tie_word_embeddings": True},
            "biased": {"num_key_value_heads": 2, "attention_bias": True},  # bias inside the q/k norm
        },
        0.0,
    ),
    FamilyRow(
        "phi3",
        "microsoft/Phi-3-mini-4k-instruct",
        # Phi-3's default pad and eos ids (32000) lie outside the tiny vocabulary.
        llama_like("Phi3Config", pad_token_id=None, eos_token_id=2),
        "Phi3ForCausalLM",
        {
            **GROUPED,
            "partial_rotary": {"num_key_value_heads": 2, "partial_rotary_factor": 0.5},
            "sliding": {"num_key_value_heads": 2, "sliding_window": 4},
            "tied": {"num_key_value_heads": 2, "tie_word_embeddings": True},
        },
        0.0,
    ),
]  # fmt: skip


_CACHE: dict[tuple[str, str], torch.nn.Module] = {}


def hf_model(row: FamilyRow, variant: str) -> torch.nn.Module:
    """A seeded random HF model for this row and variant, norms and biases randomised."""
    import transformers

    key = (row.name, variant)
    if key not in _CACHE:
        torch.manual_seed(0)
        model = getattr(transformers, row.model_class)(row.build_config(**row.variants[variant]))
        randomize_norms(model.eval())
        _CACHE[key] = model
    return _CACHE[key]


CASES = [(row, variant) for row in ROWS for variant in row.variants]
CASE_IDS = [f"{row.name}-{variant}" for row, variant in CASES]
