"""Gemma-3 beyond the family matrix (family_rows.ROWS, float32 and bfloat16 parity): per-layer
rotary bases, q/k norms, refused rope scaling and soft cap, the official config."""

import pytest
import torch

from tests.helpers import pretrained_loader
from tests.integration.family_rows import POS, hf_model, outside_window, row, tokens
from transformer_lens import HookedTransformer
from transformer_lens.loading_from_pretrained import get_pretrained_model_config

pytestmark = [
    # Expected on every load of a tiny model under an official name, offline.
    pytest.mark.filterwarnings("ignore:hf_model's config differs from the official:UserWarning"),
    pytest.mark.filterwarnings("ignore:Could not load a tokenizer:UserWarning"),
    pytest.mark.filterwarnings("ignore:center_writing_weights skipped:UserWarning"),
    pytest.mark.filterwarnings("ignore:center_unembed skipped:UserWarning"),
]

GEMMA3, QWEN3 = row("gemma3"), row("qwen3")
WINDOW = GEMMA3.fields["sliding_window"]


def load(row, processed: bool = False) -> HookedTransformer:
    return pretrained_loader(processed)(row.official_name, hf_model=hf_model(row, "gqa"))


def test_gemma3_sliding_layers_use_the_local_rotary_base():
    model = load(GEMMA3)
    cfg = model.cfg
    assert cfg.attn_types == ["local", "global"] and cfg.window_size == WINDOW == 4
    assert (cfg.rotary_base_local, cfg.rotary_base) == (50.0, 100000.0)
    assert cfg.attn_scale == 4.0 and cfg.attn_scores_soft_cap == -1.0
    assert not torch.equal(model.blocks[0].attn.rotary_cos, model.blocks[1].attn.rotary_cos)
    _, cache = model.run_with_cache(tokens())
    hidden = outside_window(POS, WINDOW)
    assert (cache["pattern", 0][..., hidden] == 0).all()
    assert (cache["pattern", 1][..., hidden] > 0).all()


@pytest.mark.parametrize("row", [GEMMA3, QWEN3], ids=["gemma3", "qwen3"])
def test_qk_norm_hooks_fire_and_processing_keeps_their_weights(row):
    raw = load(row)
    processed = load(row, processed=True)
    assert raw.cfg.use_qk_norm
    _, cache = raw.run_with_cache(tokens())
    for name in ("q_norm", "k_norm"):
        assert f"blocks.0.attn.{name}.hook_normalized" in cache
        key = f"blocks.1.attn.{name}.w"
        assert torch.equal(processed.state_dict()[key], raw.state_dict()[key])


def test_gemma3_refuses_rope_scaling_on_global_layers():
    config = GEMMA3.hf_config(
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
        }
    )
    with pytest.raises(ValueError, match=r"rope_parameters\['full_attention'\].*'linear'"):
        get_pretrained_model_config("google/gemma-3-1b-pt", hf_cfg=config)


def test_gemma3_refuses_an_attention_soft_cap_hf_would_ignore():
    config = GEMMA3.hf_config(attn_logit_softcapping=50.0)
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
