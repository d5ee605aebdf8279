"""Mistral beyond the family matrix (family_rows.ROWS, which also runs it without a sliding
window): how exactly the window masks, first_n_layers, and the official config."""

import warnings

import pytest
import torch

from tests.integration.family_rows import POS, hf_model, row, tokens
from transformer_lens import HookedTransformer
from transformer_lens.loading_from_pretrained import get_pretrained_model_config
from transformer_lens.pretrained.official_models import get_official_model_name

MISTRAL = row("mistral")


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # config differs from official; no tokenizer offline
        yield


def load(variant: str, **kwargs) -> HookedTransformer:
    hf = hf_model(MISTRAL, variant)
    return HookedTransformer.from_pretrained_no_processing(MISTRAL.official_name, hf_model=hf, **kwargs)  # fmt: skip


@pytest.mark.parametrize("variant", ["mha", "gqa", "mqa"])
def test_mistral_window_shorter_than_the_sequence_masks_exactly(variant):
    model = load(variant)
    assert model.cfg.use_local_attn and model.cfg.window_size == 4
    assert model.cfg.attn_types == ["local", "local"]
    _, cache = model.run_with_cache(tokens())
    query = torch.arange(POS)[:, None]
    key = torch.arange(POS)[None, :]
    outside = (key > query) | (key <= query - 4)
    for layer in range(model.cfg.n_layers):
        pattern = cache["pattern", layer]
        assert torch.all(pattern[..., outside] == 0), f"layer {layer} attends outside the window"
        assert torch.all(pattern[..., ~outside] > 0), f"layer {layer}"


def test_mistral_without_sliding_window_is_global():
    """Logits: the matrix's global row."""
    model = load("global")
    assert not model.cfg.use_local_attn and model.cfg.attn_types is None


def test_mistral_first_n_layers_keeps_the_first_layers_attention_types():
    model = load("gqa", first_n_layers=1)
    assert model.cfg.attn_types == ["local"]


def test_official_names_resolve():
    assert get_official_model_name("mistral-7b") == "mistralai/Mistral-7B-v0.1"


def test_mistral_7b_config_slides_every_layer():
    cfg = get_pretrained_model_config("mistral-7b")
    assert cfg.use_local_attn and cfg.window_size == 4096 and cfg.attn_types == ["local"] * 32
    assert (cfg.n_key_value_heads, cfg.d_vocab, cfg.rotary_base) == (8, 32000, 10000.0)
