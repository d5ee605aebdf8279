"""The family test matrix: one row per model family, the one place a family's parity rows
live. A new family is one adapter file plus one row here. Each row names its tiny_hf family
and the config fields that make its features show; each variant is one tiny random HF model
(eager attention, float32) whose logits, residuals and patterns the matrix
(families/test_parity.py) compares with ours: multi-head, grouped and multi-query where the
family allows, plus the config options the family maps."""

from dataclasses import dataclass, field
from typing import Any

import torch

from tests.tiny_hf import VOCAB, tiny_hf, tiny_hf_config

ATOL = 1e-5
BATCH, POS = 2, 11


@dataclass(frozen=True)
class FamilyRow:
    name: str  # a tiny_hf family
    official_name: str  # loaded with hf_model=, so the name only labels the model
    fields: dict[str, Any]  # config fields of every variant, over tiny_hf's defaults
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    # max |logit diff| against HF in bfloat16 (0.0: bit for bit); None: no bfloat16 row
    bf16_tolerance: float | None = None

    def hf_config(self, **variant: Any) -> Any:
        return tiny_hf_config(self.name, **{**self.fields, **variant})


GROUPED = {"mha": {"num_key_value_heads": 8}, "gqa": {"num_key_value_heads": 2}, "mqa": {"num_key_value_heads": 1}}  # fmt: skip
LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16, "rope_theta": 500000.0}  # fmt: skip
LINEAR_ROPE = {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0}

ROWS = [
    FamilyRow(
        "gpt2",
        "gpt2",
        {},
        {
            "mha": {},
            "inverse_layer_scale": {"scale_attn_by_inverse_layer_idx": True},
            "unscaled": {"scale_attn_weights": False},
            "n_inner_gelu": {"n_inner": 96, "activation_function": "gelu", "layer_norm_epsilon": 1e-3},
        },
        0.0,
    ),
    FamilyRow(
        "neox",
        "EleutherAI/pythia-70m",
        {},
        {
            "mha": {},
            "sequential": {"use_parallel_residual": False},
            "full_rotary_base500": {"rotary_pct": 1.0, "rotary_emb_base": 500},
            "half_rotary_sequential": {"rotary_pct": 0.5, "use_parallel_residual": False, "hidden_act": "gelu_new"},
            "tied": {"tie_word_embeddings": True},
        },
        0.0,
    ),
    FamilyRow(
        "llama",
        "meta-llama/Llama-3.2-1B",
        {"head_dim": 8},
        {
            **GROUPED,
            "llama3_rope": {"num_key_value_heads": 2, "rope_parameters": LLAMA3_ROPE},
            "linear_rope": {"num_key_value_heads": 2, "rope_parameters": LINEAR_ROPE},
            "attention_bias": {"num_key_value_heads": 2, "attention_bias": True},
            "tied": {"num_key_value_heads": 2, "tie_word_embeddings": True},
            "wide_heads": {"num_key_value_heads": 2, "head_dim": 16},  # 8 x 16 != hidden 64
            "pretraining_tp": {"num_key_value_heads": 2, "pretraining_tp": 2},
        },
        0.0,
    ),
    FamilyRow(
        "mistral",
        "mistralai/Mistral-7B-v0.1",
        {"head_dim": 8, "sliding_window": 4},  # shorter than the test sequence
        {**GROUPED, "global": {"num_key_value_heads": 2, "sliding_window": None}},
        0.0,
    ),
    FamilyRow(
        "qwen2",
        "Qwen/Qwen2-0.5B",
        {"tie_word_embeddings": True},
        {
            **GROUPED,
            "sliding": {"num_key_value_heads": 2, "tie_word_embeddings": False, "use_sliding_window": True, "max_window_layers": 1, "sliding_window": 4},
            "layer_types": {"num_key_value_heads": 2, "tie_word_embeddings": False, "use_sliding_window": True, "sliding_window": 3, "layer_types": ["sliding_attention", "full_attention"]},
        },
        0.0,
    ),
    FamilyRow("gemma", "google/gemma-2b", {}, GROUPED, 0.0),
    FamilyRow(
        "gemma2",
        "google/gemma-2-2b",
        {"sliding_window": 4, "attn_logit_softcapping": 5.0, "final_logit_softcapping": 3.0},
        GROUPED,
        0.0,
    ),
    FamilyRow(
        "gemma3",
        "google/gemma-3-1b-pt",
        {
            "sliding_window": 4,
            "final_logit_softcapping": 3.0,
            "layer_types": ["sliding_attention", "full_attention"],
            # Far-apart bases, so that swapping the local and the global one shows.
            "rope_parameters": {
                "sliding_attention": {"rope_type": "default", "rope_theta": 50.0},
                "full_attention": {"rope_type": "default", "rope_theta": 100000.0},
            },
        },
        {**GROUPED, "uncapped": {"num_key_value_heads": 1, "final_logit_softcapping": None}},
        0.0,
    ),
    FamilyRow(
        "qwen3",
        "Qwen/Qwen3-0.6B",
        {},  # head_dim 16: 8 heads x 16 != hidden 64, so head_dim is explicit
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
        {},
        {
            **GROUPED,
            "partial_rotary": {"num_key_value_heads": 2, "partial_rotary_factor": 0.5},
            "sliding": {"num_key_value_heads": 2, "sliding_window": 4},
            "tied": {"num_key_value_heads": 2, "tie_word_embeddings": True},
        },
        0.0,
    ),
]  # fmt: skip


def row(name: str) -> FamilyRow:
    return next(r for r in ROWS if r.name == name)


_CACHE: dict[tuple[str, str], torch.nn.Module] = {}


def hf_model(row: FamilyRow, variant: str) -> torch.nn.Module:
    """The row's tiny_hf model of this variant (norms and biases random), cached: copy it
    before changing it."""
    key = (row.name, variant)
    if key not in _CACHE:
        _CACHE[key] = tiny_hf(row.name, **{**row.fields, **row.variants[variant]})
    return _CACHE[key]


def tokens(pos: int = POS) -> torch.Tensor:
    return torch.randint(0, VOCAB, (BATCH, pos), generator=torch.Generator().manual_seed(0))


def outside_window(pos: int, window: int) -> torch.Tensor:
    """[query_pos, key_pos]: keys a causal sliding window of this size hides."""
    query = torch.arange(pos)[:, None]
    key = torch.arange(pos)[None, :]
    return key <= query - window


CASES = [(row, variant) for row in ROWS for variant in row.variants]
CASE_IDS = [f"{row.name}-{variant}" for row, variant in CASES]
