"""Qwen2 beyond the family matrix (family_rows.ROWS, which also runs its sliding-window
variants): which layers slide, the refusal of a sliding layer without a window, official
configs and BOS."""

import warnings

import pytest

from tests.integration.family_rows import hf_model, row
from tests.tiny_hf import tiny_hf_config
from transformer_lens import HookedTransformer
from transformer_lens.loading_from_pretrained import get_pretrained_model_config
from transformer_lens.pretrained.convert import config_fields
from transformer_lens.pretrained.families.qwen2 import QWEN2
from transformer_lens.pretrained.official_models import get_official_model_name
from transformer_lens.pretrained.registry import adapter_for

QWEN2_ROW = row("qwen2")


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # config differs from official; no tokenizer offline
        yield


def load(variant: str) -> HookedTransformer:
    hf = hf_model(QWEN2_ROW, variant)
    return HookedTransformer.from_pretrained_no_processing(QWEN2_ROW.official_name, hf_model=hf)


def test_qwen2_sliding_window_from_max_window_layers():
    """Logits and patterns against HF: the matrix's sliding row."""
    model = load("sliding")
    assert model.cfg.attn_types == ["global", "local"] and model.cfg.window_size == 4


def test_qwen2_explicit_layer_types():
    """Logits: the matrix's layer_types row."""
    assert load("layer_types").cfg.attn_types == ["local", "global"]


def test_qwen2_sliding_layers_without_a_window_raise():
    hf_config = tiny_hf_config("qwen2")
    hf_config.layer_types = ["sliding_attention", "full_attention"]  # and sliding_window None
    with pytest.raises(ValueError, match="sliding_window=None"):
        config_fields(QWEN2, hf_config)


@pytest.mark.parametrize(
    ("alias", "official"), [("qwen2-0.5b", "Qwen/Qwen2-0.5B"), ("QWEN2-7B", "Qwen/Qwen2-7B")]
)
def test_official_names_resolve(alias, official):
    assert get_official_model_name(alias) == official


def test_qwen2_configs_have_the_official_facts():
    cfg = get_pretrained_model_config("Qwen/Qwen2-0.5B")
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_key_value_heads) == (24, 896, 14, 2)
    assert (cfg.d_head, cfg.d_mlp, cfg.eps, cfg.rotary_base) == (64, 4864, 1e-6, 1e6)
    assert not cfg.use_local_attn and cfg.attn_types is None
    big = get_pretrained_model_config("qwen2-7b")
    assert (big.n_layers, big.d_model, big.n_heads, big.n_key_value_heads, big.d_vocab) == (28, 3584, 28, 4, 152064)  # fmt: skip


def test_qwen2_adapter_does_not_prepend_bos():
    from transformer_lens.pretrained.official_models import official_hf_config

    hf_config = official_hf_config("Qwen/Qwen2-0.5B")
    assert config_fields(adapter_for(hf_config), hf_config)["default_prepend_bos"] is False


def test_qwen2_0_5b_config_does_not_prepend_bos():
    assert get_pretrained_model_config("Qwen/Qwen2-0.5B").default_prepend_bos is False
