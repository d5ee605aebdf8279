"""Gemma-2b regression at full width: the configuration on which classic TransformerLens
crashed with split Q/K/V input (8 query heads, 1 key/value head, d_head 256, vocab 256000).

Random weights with the official configuration (no download); norm weights randomised so
that Gemma's `1 + w` convention matters. Two layers at full width; all 18 layers are in
test_gemma_2b_full.py under `-m slow`."""

import warnings

import pytest
import torch

from tests.helpers import assert_close, randomize_norms
from transformer_lens import HookedTransformer
from transformer_lens.pretrained.official_models import official_hf_config

SPLIT_INPUTS = ("hook_q_input", "hook_k_input", "hook_v_input")


def build_gemma_2b(n_layers: int, dtype: torch.dtype):
    from transformers import GemmaForCausalLM

    config = official_hf_config("google/gemma-2b")
    config.num_hidden_layers = n_layers
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # initialise in the target dtype: 18 layers in fp32 don't fit
    try:
        hf_model = GemmaForCausalLM(config).eval()
    finally:
        torch.set_default_dtype(previous)
    randomize_norms(hf_model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fewer layers than official; no tokenizer offline
        model = HookedTransformer.from_pretrained_no_processing(
            "google/gemma-2b", hf_model=hf_model, dtype=dtype
        )
    return hf_model, model


@pytest.fixture(scope="module")
def gemma_2b_two_layers():
    return build_gemma_2b(n_layers=2, dtype=torch.float32)


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, 256000, (2, 12), generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def test_gemma_2b_matches_hugging_face_eager(gemma_2b_two_layers, tokens):
    hf_model, model = gemma_2b_two_layers
    assert (model.cfg.n_heads, model.cfg.n_key_value_heads, model.cfg.d_head) == (8, 1, 256)
    # float32 at d_model 2048 and d_mlp 16384: long reductions, so 1e-4 rather than 1e-5.
    assert_close(model(tokens), hf_model(tokens).logits, atol=1e-4, what="logits vs HF")


@torch.no_grad()
def test_gemma_2b_split_qkv_input_matches_plain(gemma_2b_two_layers, tokens):
    _, model = gemma_2b_two_layers
    plain = model(tokens)
    model.set_use_split_qkv_input(True)
    try:
        assert_close(model(tokens), plain, atol=1e-5, what="split input on vs off")
        # Identity hooks that copy the per-head inputs force the general per-head projection.
        materialised, cache, norm_shapes = _run_materialised(model, tokens)
        # ln1 ran on the edited per-query-head input (the single key/value head's input
        # is normalised as one [batch, pos, d_model] tensor).
        assert (2, 12, 8, 2048) in norm_shapes, f"per-head path did not run: {norm_shapes}"
        assert cache["blocks.0.hook_q_input"].shape == (2, 12, 8, 2048)
        assert cache["blocks.0.hook_k_input"].shape == (2, 12, 1, 2048)
        assert_close(materialised, plain, atol=1e-5, what="materialised split input vs plain")
    finally:
        model.set_use_split_qkv_input(False)


def _run_materialised(model, tokens):
    norm_shapes = []
    hooks = [
        (lambda name: name.endswith(SPLIT_INPUTS), lambda x, hook: x.clone()),
        ("blocks.0.ln1.hook_normalized", lambda x, hook: norm_shapes.append(tuple(x.shape))),
    ]
    with model.hooks(fwd_hooks=hooks):
        logits, cache = model.run_with_cache(
            tokens, names_filter=[f"blocks.0.{name}" for name in SPLIT_INPUTS]
        )
    return logits, cache, norm_shapes
