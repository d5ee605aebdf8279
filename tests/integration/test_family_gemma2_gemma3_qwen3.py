"""Gemma-2, Gemma-3 and Qwen3: what sets them apart (sliding-window order, soft caps,
post-norms, q/k norms, per-layer-type rotary bases, official configs). Their parity with
Hugging Face (float32 and bfloat16) is checked by the shared matrix, family_rows.ROWS."""

import socket

import pytest
import torch

from tests.helpers import assert_close, pretrained_loader
from tests.integration import test_family_parity as parity
from tests.integration.family_rows import ROWS, FamilyRow, hf_model
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
    pytest.mark.filterwarnings("ignore:No tokenizer files:UserWarning"),
]

ATOL = parity.ATOL
# The rows' values (family_rows.ROWS): a window shorter than parity.POS, so the sliding
# layers mask some keys, and caps small enough to matter.
WINDOW = 4
ATTN_CAP, LOGIT_CAP = 5.0, 3.0

GEMMA2_ROW, GEMMA3_ROW, QWEN3_ROW = (
    next(row for row in ROWS if row.name == name) for name in ("gemma2", "gemma3", "qwen3")
)


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


def load(row: FamilyRow, variant: str = "gqa", processed: bool = False) -> HookedTransformer:
    hf = hf_model(row, variant)
    return pretrained_loader(processed)(row.official_name, hf_model=hf)


def outside_window(pos: int, window: int) -> torch.Tensor:
    """[query_pos, key_pos]: keys a causal sliding window of this size hides."""
    query = torch.arange(pos)[:, None]
    key = torch.arange(pos)[None, :]
    return key <= query - window


# ------------------------------------------------------------------------ Gemma-2


def test_gemma2_layer_zero_slides_and_layer_one_attends_globally():
    model = load(GEMMA2_ROW)
    assert model.cfg.attn_types == ["local", "global"]
    assert model.cfg.use_local_attn and model.cfg.window_size == WINDOW
    _, cache = model.run_with_cache(parity.tokens())
    hidden = outside_window(parity.POS, WINDOW)
    assert (cache["pattern", 0][..., hidden] == 0).all(), "layer 0 attends outside its window"
    assert (cache["pattern", 1][..., hidden] > 0).all(), "layer 1 is masked like a local layer"


def test_gemma2_attention_scores_stay_within_the_soft_cap():
    model = load(GEMMA2_ROW)
    assert model.cfg.attn_scores_soft_cap == ATTN_CAP

    def enlarge(q, hook):  # scores far beyond the cap, so that the cap decides them
        return q * 1e4

    with model.hooks(fwd_hooks=[(lambda name: name.endswith("attn.hook_q"), enlarge)]):
        _, cache = model.run_with_cache(parity.tokens())
    for layer in range(model.cfg.n_layers):
        scores = cache["attn_scores", layer]
        finite = scores[scores.isfinite()]
        assert finite.abs().max() <= ATTN_CAP
        assert finite.abs().max() > 0.99 * ATTN_CAP, "the cap was never reached"


def test_gemma2_logits_are_soft_capped():
    model = load(GEMMA2_ROW)
    assert model.cfg.output_logits_soft_cap == LOGIT_CAP
    enlarge = ("ln_final.hook_normalized", lambda x, hook: x * 1000.0)
    logits = model.run_with_hooks(parity.tokens(), fwd_hooks=[enlarge])
    model.cfg.output_logits_soft_cap = -1.0
    try:
        raw = model.run_with_hooks(parity.tokens(), fwd_hooks=[enlarge])
    finally:
        model.cfg.output_logits_soft_cap = LOGIT_CAP
    assert raw.abs().max() > 10 * LOGIT_CAP
    assert logits.abs().max() <= LOGIT_CAP
    assert_close(logits, LOGIT_CAP * torch.tanh(raw / LOGIT_CAP), ATOL, "capped logits")


def test_gemma2_post_norm_hooks_exist_fire_and_feed_the_residual():
    model = load(GEMMA2_ROW)
    names = [
        f"blocks.{layer}.{norm}.{hook}"
        for layer in range(model.cfg.n_layers)
        for norm in ("ln1_post", "ln2_post")
        for hook in ("hook_scale", "hook_normalized")
    ]
    assert set(names) <= set(model.hook_dict)
    _, cache = model.run_with_cache(parity.tokens())
    batch_pos = (parity.BATCH, parity.POS)
    for layer in range(model.cfg.n_layers):
        block = model.blocks[layer]
        for norm, output in (("ln1_post", "hook_attn_out"), ("ln2_post", "hook_mlp_out")):
            assert cache[f"blocks.{layer}.{norm}.hook_scale"].shape == (*batch_pos, 1)
            normalized = cache[f"blocks.{layer}.{norm}.hook_normalized"]
            assert normalized.shape == (*batch_pos, model.cfg.d_model)
            weighted = normalized * getattr(block, norm).w
            assert_close(weighted, cache[f"blocks.{layer}.{output}"], ATOL, f"{layer} {norm}")


def test_gemma2_processing_keeps_post_norms_and_logit_cap():
    raw = load(GEMMA2_ROW)
    processed = load(GEMMA2_ROW, processed=True)
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


# ------------------------------------------------------------------------ Gemma-3


def test_gemma3_sliding_layers_use_the_local_rotary_base():
    model = load(GEMMA3_ROW)
    cfg = model.cfg
    assert cfg.attn_types == ["local", "global"] and cfg.window_size == WINDOW
    assert (cfg.rotary_base_local, cfg.rotary_base) == (50.0, 100000.0)
    assert cfg.attn_scale == 4.0 and cfg.attn_scores_soft_cap == -1.0
    assert not torch.equal(model.blocks[0].attn.rotary_cos, model.blocks[1].attn.rotary_cos)
    _, cache = model.run_with_cache(parity.tokens())
    hidden = outside_window(parity.POS, WINDOW)
    assert (cache["pattern", 0][..., hidden] == 0).all()
    assert (cache["pattern", 1][..., hidden] > 0).all()


@pytest.mark.parametrize("row", [GEMMA3_ROW, QWEN3_ROW], ids=["gemma3", "qwen3"])
def test_qk_norm_hooks_fire_and_processing_keeps_their_weights(row):
    raw = load(row)
    processed = load(row, processed=True)
    assert raw.cfg.use_qk_norm
    _, cache = raw.run_with_cache(parity.tokens())
    for name in ("q_norm", "k_norm"):
        assert f"blocks.0.attn.{name}.hook_normalized" in cache
        key = f"blocks.1.attn.{name}.w"
        assert torch.equal(processed.state_dict()[key], raw.state_dict()[key])


def test_gemma3_refuses_rope_scaling_on_global_layers():
    config = GEMMA3_ROW.build_config(
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
        }
    )
    with pytest.raises(ValueError, match=r"rope_parameters\['full_attention'\].*'linear'"):
        get_pretrained_model_config("google/gemma-3-1b-pt", hf_cfg=config)


def test_gemma3_refuses_an_attention_soft_cap_hf_would_ignore():
    config = GEMMA3_ROW.build_config(attn_logit_softcapping=50.0)
    with pytest.raises(ValueError, match="attn_logit_softcapping"):
        get_pretrained_model_config("google/gemma-3-1b-pt", hf_cfg=config)


def test_gemma3_official_config():
    cfg = get_pretrained_model_config("gemma-3-1b-pt")
    shape = (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_key_value_heads, cfg.d_head)
    assert shape == (26, 1152, 4, 1, 256)
    assert (cfg.rotary_base, cfg.rotary_base_local, cfg.window_size) == (1e6, 1e4, 512)
    assert cfg.attn_types == (["local"] * 5 + ["global"]) * 4 + ["local"] * 2
    assert cfg.use_qk_norm and cfg.attn_scale == 16.0 and cfg.output_logits_soft_cap == -1.0
    assert (cfg.d_mlp, cfg.d_vocab, cfg.n_ctx) == (6912, 262144, 8192)  # n_ctx 32768 capped


# -------------------------------------------------------------------------- Qwen3


def test_qwen3_config_follows_llama_norms_with_explicit_head_dim():
    cfg = load(QWEN3_ROW).cfg
    assert cfg.d_head == 16 and cfg.n_heads * cfg.d_head != cfg.d_model
    assert cfg.use_qk_norm and cfg.rms_norm_cast_before_weight
    assert not cfg.use_local_attn and cfg.attn_types is None
    sliding = load(QWEN3_ROW, "sliding").cfg
    assert sliding.attn_types == ["global", "local"] and sliding.window_size == WINDOW


def test_qwen3_official_config():
    cfg = get_pretrained_model_config("qwen3-0.6b")
    shape = (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_key_value_heads, cfg.d_head)
    assert shape == (28, 1024, 16, 8, 128)
    assert (cfg.d_mlp, cfg.d_vocab, cfg.rotary_base) == (3072, 151936, 1e6)
    assert cfg.n_ctx == 8192  # 40960 capped, as for the Llama-like families
    assert cfg.act_fn == "silu" and cfg.use_qk_norm
    assert cfg.original_architecture == "Qwen3ForCausalLM"
