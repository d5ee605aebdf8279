"""Qwen3 beyond the family matrix (family_rows.ROWS, which runs its sliding, tied and biased
variants; the q/k norm test shared with Gemma-3 is in test_gemma3.py): the config it maps
and the official config."""

import pytest

from tests.integration.family_rows import hf_model, row
from transformer_lens import HookedTransformer
from transformer_lens.loading_from_pretrained import get_pretrained_model_config

pytestmark = [
    # Expected on every load of a tiny model under an official name, offline.
    pytest.mark.filterwarnings("ignore:hf_model's config differs from the official:UserWarning"),
    pytest.mark.filterwarnings("ignore:Could not load a tokenizer:UserWarning"),
]

QWEN3 = row("qwen3")


def load(variant: str) -> HookedTransformer:
    hf = hf_model(QWEN3, variant)
    return HookedTransformer.from_pretrained_no_processing(QWEN3.official_name, hf_model=hf)


def test_qwen3_config_follows_llama_norms_with_explicit_head_dim():
    cfg = load("gqa").cfg
    assert cfg.d_head == 16 and cfg.n_heads * cfg.d_head != cfg.d_model
    assert cfg.use_qk_norm and cfg.rms_norm_cast_before_weight
    assert not cfg.use_local_attn and cfg.attn_types is None
    sliding = load("sliding").cfg
    assert sliding.attn_types == ["global", "local"] and sliding.window_size == 4


def test_qwen3_official_config():
    cfg = get_pretrained_model_config("qwen3-0.6b")
    shape = (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_key_value_heads, cfg.d_head)
    assert shape == (28, 1024, 16, 8, 128)
    assert (cfg.d_mlp, cfg.d_vocab, cfg.rotary_base) == (3072, 151936, 1e6)
    assert cfg.n_ctx == 8192  # 40960 capped, as for the Llama-like families
    assert cfg.act_fn == "silu" and cfg.use_qk_norm
    assert cfg.original_architecture == "Qwen3ForCausalLM"
