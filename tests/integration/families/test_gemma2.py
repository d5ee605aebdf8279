"""Gemma-2 beyond the family matrix (family_rows.ROWS, float32 and bfloat16 parity): the
sliding-window order, soft caps, post-norms and their processing, official configs."""

import socket

import pytest
import torch

from tests.helpers import assert_close, pretrained_loader
from tests.integration.family_rows import ATOL, BATCH, POS, hf_model, outside_window, row, tokens
from transformer_lens import HookedTransformer
from transformer_lens.components.rms_norm import RMSNorm
from transformer_lens.loading_from_pretrained import (
    get_official_model_name,
    get_pretrained_model_config,
)

pytestmark = [
    # Expected on every load of a tiny model under an official name, offline.
    pytest.mark.filterwarnings("ignore:hf_model's config differs from the official:UserWarning"),
    pytest.mark.filterwarnings("ignore:Could not load a tokenizer:UserWarning"),
    pytest.mark.filterwarnings("ignore:center_writing_weights skipped:UserWarning"),
    pytest.mark.filterwarnings("ignore:center_unembed skipped:UserWarning"),
]

GEMMA2 = row("gemma2")
# The row's values: a window shorter than POS, so the sliding layers mask some keys, and
# caps small enough to matter.
WINDOW = GEMMA2.fields["sliding_window"]
ATTN_CAP = GEMMA2.fields["attn_logit_softcapping"]
LOGIT_CAP = GEMMA2.fields["final_logit_softcapping"]


def load(processed: bool = False) -> HookedTransformer:
    return pretrained_loader(processed)(GEMMA2.official_name, hf_model=hf_model(GEMMA2, "gqa"))


def test_gemma2_row_has_the_window_and_caps_these_tests_rely_on():
    assert (WINDOW, ATTN_CAP, LOGIT_CAP) == (4, 5.0, 3.0) and WINDOW < POS


def test_gemma2_layer_zero_slides_and_layer_one_attends_globally():
    model = load()
    assert model.cfg.attn_types == ["local", "global"]
    assert model.cfg.use_local_attn and model.cfg.window_size == WINDOW
    _, cache = model.run_with_cache(tokens())
    hidden = outside_window(POS, WINDOW)
    assert (cache["pattern", 0][..., hidden] == 0).all(), "layer 0 attends outside its window"
    assert (cache["pattern", 1][..., hidden] > 0).all(), "layer 1 is masked like a local layer"


def test_gemma2_attention_scores_stay_within_the_soft_cap():
    model = load()
    assert model.cfg.attn_scores_soft_cap == ATTN_CAP

    def enlarge(q, hook):  # scores far beyond the cap, so that the cap decides them
        return q * 1e4

    with model.hooks(fwd_hooks=[(lambda name: name.endswith("attn.hook_q"), enlarge)]):
        _, cache = model.run_with_cache(tokens())
    for layer in range(model.cfg.n_layers):
        scores = cache["attn_scores", layer]
        finite = scores[scores.isfinite()]
        assert finite.abs().max() <= ATTN_CAP
        assert finite.abs().max() > 0.99 * ATTN_CAP, "the cap was never reached"


def test_gemma2_logits_are_soft_capped():
    model = load()
    assert model.cfg.output_logits_soft_cap == LOGIT_CAP
    enlarge = ("ln_final.hook_normalized", lambda x, hook: x * 1000.0)
    logits = model.run_with_hooks(tokens(), fwd_hooks=[enlarge])
    model.cfg.output_logits_soft_cap = -1.0
    try:
        raw = model.run_with_hooks(tokens(), fwd_hooks=[enlarge])
    finally:
        model.cfg.output_logits_soft_cap = LOGIT_CAP
    assert raw.abs().max() > 10 * LOGIT_CAP
    assert logits.abs().max() <= LOGIT_CAP
    assert_close(logits, LOGIT_CAP * torch.tanh(raw / LOGIT_CAP), ATOL, "capped logits")


def test_gemma2_post_norm_hooks_exist_fire_and_feed_the_residual():
    model = load()
    names = [
        f"blocks.{layer}.{norm}.{hook}"
        for layer in range(model.cfg.n_layers)
        for norm in ("ln1_post", "ln2_post")
        for hook in ("hook_scale", "hook_normalized")
    ]
    assert set(names) <= set(model.hook_dict)
    _, cache = model.run_with_cache(tokens())
    batch_pos = (BATCH, POS)
    for layer in range(model.cfg.n_layers):
        block = model.blocks[layer]
        for norm, output in (("ln1_post", "hook_attn_out"), ("ln2_post", "hook_mlp_out")):
            assert cache[f"blocks.{layer}.{norm}.hook_scale"].shape == (*batch_pos, 1)
            normalized = cache[f"blocks.{layer}.{norm}.hook_normalized"]
            assert normalized.shape == (*batch_pos, model.cfg.d_model)
            weighted = normalized * getattr(block, norm).w
            assert_close(weighted, cache[f"blocks.{layer}.{output}"], ATOL, f"{layer} {norm}")


def test_gemma2_processing_keeps_post_norms_and_logit_cap():
    raw = load()
    processed = load(processed=True)
    assert processed.cfg.normalization_type == "RMSPre"
    assert processed.cfg.output_logits_soft_cap == LOGIT_CAP
    raw_state, state = raw.state_dict(), processed.state_dict()
    assert "blocks.0.ln1.w" not in state and "ln_final.w" not in state  # folded
    for layer in range(processed.cfg.n_layers):
        for norm in ("ln1_post", "ln2_post"):
            assert isinstance(getattr(processed.blocks[layer], norm), RMSNorm)
            key = f"blocks.{layer}.{norm}.w"
            assert torch.equal(state[key], raw_state[key]), f"{key} changed"


def _no_network(*args, **kwargs):
    raise AssertionError("tried to open a network connection")


@pytest.mark.parametrize(
    ("alias", "layers", "d_model", "heads", "kv_heads", "d_head", "d_mlp", "attn_scale"),
    [
        ("gemma-2-2b", 26, 2304, 8, 4, 256, 9216, 16.0),
        ("gemma-2-9b", 42, 3584, 16, 8, 256, 14336, 16.0),
        ("gemma-2-27b", 46, 4608, 32, 16, 128, 36864, 12.0),
    ],
)
def test_gemma2_official_configs_need_no_network(
    monkeypatch, alias, layers, d_model, heads, kv_heads, d_head, d_mlp, attn_scale
):
    monkeypatch.setattr(socket, "socket", _no_network)
    assert get_official_model_name(alias) == f"google/{alias}"
    assert get_official_model_name(f"{alias}-it") == f"google/{alias}-it"
    cfg = get_pretrained_model_config(alias)
    heads_shape = (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_key_value_heads)
    assert heads_shape == (layers, d_model, heads, kv_heads)
    assert (cfg.d_head, cfg.d_mlp, cfg.d_vocab, cfg.n_ctx) == (d_head, d_mlp, 256000, 8192)
    assert cfg.attn_scale == attn_scale
    assert (cfg.attn_scores_soft_cap, cfg.output_logits_soft_cap) == (50.0, 30.0)
    assert cfg.use_local_attn and cfg.window_size == 4096
    assert cfg.attn_types == ["local", "global"] * (layers // 2)
    assert cfg.act_fn == "gelu_pytorch_tanh" and cfg.eps == 1e-6
    assert cfg.normalization_type == "RMS" and cfg.use_normalization_before_and_after
    assert cfg.positional_embedding_type == "rotary" and cfg.rotary_dim == d_head
    assert cfg.rotary_base == 10000.0 and cfg.gated_mlp and cfg.final_rms
    assert cfg.original_architecture == "Gemma2ForCausalLM"
