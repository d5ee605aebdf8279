"""get_pretrained_model_config of official models with no network: the shipped facts, and
the overrides (first_n_layers, n_ctx, dtype, fold_ln) and their checks."""

import pytest
import torch

from tests.unit.pretrained.loading import LOADING_MARKS
from transformer_lens import loading_from_pretrained

pytestmark = LOADING_MARKS


def test_gemma_2b_config_has_the_official_facts():
    cfg = loading_from_pretrained.get_pretrained_model_config("google/gemma-2b")
    facts = dict(
        n_layers=18,
        d_model=2048,
        n_heads=8,
        n_key_value_heads=1,
        d_head=256,
        d_mlp=16384,
        d_vocab=256000,
        d_vocab_out=256000,
        n_ctx=8192,
        eps=1e-6,
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_dim=256,
        rotary_base=10000.0,
        gated_mlp=True,
        final_rms=True,
        attn_scale=16.0,
        original_architecture="GemmaForCausalLM",
        model_name="gemma-2b",
        tokenizer_name="google/gemma-2b",
        init_weights=False,
        dtype=torch.float32,
    )
    assert {field: getattr(cfg, field) for field in facts} == facts


def test_gemma_7b_config_is_multi_head_with_wide_heads():
    cfg = loading_from_pretrained.get_pretrained_model_config("gemma-7b")
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_key_value_heads) == (28, 3072, 16, 16)
    assert cfg.n_heads * cfg.d_head != cfg.d_model
    assert cfg.tokenizer_name == "google/gemma-7b"


def test_config_overrides_first_n_layers_n_ctx_dtype_and_fold_ln():
    cfg = loading_from_pretrained.get_pretrained_model_config(
        "gemma-2b", first_n_layers=2, n_ctx=128, dtype="bfloat16", fold_ln=True
    )
    assert (cfg.n_layers, cfg.n_ctx, cfg.dtype) == (2, 128, torch.bfloat16)
    assert cfg.normalization_type == "RMSPre"
    assert cfg.d_model == 2048


def test_config_n_ctx_larger_than_the_model_warns():
    with pytest.warns(UserWarning, match="n_ctx=16384 is larger than the model's 8192"):
        cfg = loading_from_pretrained.get_pretrained_model_config("gemma-2b", n_ctx=16384)
    assert cfg.n_ctx == 16384


@pytest.mark.parametrize("first_n_layers", [0, 19])
def test_config_first_n_layers_out_of_range_raises(first_n_layers):
    with pytest.raises(ValueError, match=f"first_n_layers.*{first_n_layers}"):
        loading_from_pretrained.get_pretrained_model_config(
            "gemma-2b", first_n_layers=first_n_layers
        )
