"""Phi-3 beyond the family matrix (family_rows.ROWS, which runs its partial-rotary, sliding
and tied variants): fused projections, which dims rotate, the sliding window, refused rope
types and attention bias, the official config."""

import socket
from types import SimpleNamespace

import pytest
import torch

from tests.integration.family_rows import POS, hf_model, row, tokens
from tests.tiny_hf import tiny_hf_config
from transformer_lens import HookedTransformer
from transformer_lens.loading_from_pretrained import (
    get_official_model_name,
    get_pretrained_model_config,
)
from transformer_lens.pretrained.families import phi3

pytestmark = [
    # Expected on every load of a tiny model under an official name, offline.
    pytest.mark.filterwarnings("ignore:hf_model's config differs from the official:UserWarning"),
    pytest.mark.filterwarnings("ignore:Could not load a tokenizer:UserWarning"),
]

PHI3_ROW = row("phi3")
PHI3_NAME = "microsoft/Phi-3-mini-4k-instruct"


def load_phi3(variant: str) -> HookedTransformer:
    hf = hf_model(PHI3_ROW, variant)
    return HookedTransformer.from_pretrained_no_processing(PHI3_NAME, hf_model=hf)


def test_phi3_partial_rotary_rotates_only_the_first_dims():
    """Logits: the matrix's partial_rotary row."""
    model = load_phi3("partial_rotary")
    assert (model.cfg.d_head, model.cfg.rotary_dim) == (8, 4)  # partial_rotary_factor 0.5
    _, cache = model.run_with_cache(tokens())
    for name in ("q", "k"):
        rotated, plain = cache[f"rot_{name}", 0], cache[name, 0]
        assert torch.equal(rotated[..., 4:], plain[..., 4:]), f"{name}: passed-through dims moved"
        assert not torch.equal(rotated[..., :4], plain[..., :4]), f"{name}: nothing rotated"


def test_phi3_fused_projections_split_in_hugging_face_order():
    """qkv_proj rows are [q; k; v] (k and v with n_key_value_heads); gate_up_proj rows are
    [gate; up], and HF computes up * act(gate)."""
    hf = hf_model(PHI3_ROW, "gqa")
    model = load_phi3("gqa")
    layer = hf.model.layers[1]
    q, k, v = layer.self_attn.qkv_proj.weight.split([64, 16, 16])
    attn = model.blocks[1].attn
    assert torch.equal(attn.W_Q, q.view(8, 8, 64).transpose(1, 2))
    assert torch.equal(attn._W_K, k.view(2, 8, 64).transpose(1, 2))
    assert torch.equal(attn._W_V, v.view(2, 8, 64).transpose(1, 2))
    gate, up = layer.mlp.gate_up_proj.weight.chunk(2)
    assert torch.equal(model.blocks[1].mlp.W_gate, gate.T)
    assert torch.equal(model.blocks[1].mlp.W_in, up.T)


def test_phi3_sliding_window_masks_every_layer_only_when_configured():
    sliding = load_phi3("sliding")
    assert sliding.cfg.attn_types == ["local", "local"] and sliding.cfg.window_size == 4
    assert load_phi3("gqa").cfg.attn_types is None
    _, cache = sliding.run_with_cache(tokens())
    query, key = torch.arange(POS)[:, None], torch.arange(POS)[None, :]
    hidden = key <= query - 4  # HF keeps key > query - sliding_window
    for layer in range(sliding.cfg.n_layers):
        assert (cache["pattern", layer][..., hidden] == 0).all()
        assert (cache["pattern", layer][..., ~hidden & (key <= query)] > 0).all()


def test_phi3_refuses_longrope_naming_it():
    config = tiny_hf_config(
        "phi3",
        rope_parameters={
            "rope_type": "longrope",
            "rope_theta": 10000.0,
            "short_factor": [1.0] * 4,
            "long_factor": [2.0] * 4,
            "original_max_position_embeddings": 32,
        },
    )
    with pytest.raises(ValueError, match=r"Unsupported rope type 'longrope' for Phi3Config"):
        get_pretrained_model_config(PHI3_NAME, hf_cfg=config)


@pytest.mark.parametrize("rope_type", ["su", "dynamic", "linear"])
def test_phi3_refuses_other_rope_types_of_older_configs_naming_them(rope_type):
    """transformers 4.x configs: rope_theta plus rope_scaling {"type": ...}."""
    config = SimpleNamespace(rope_theta=10000.0, rope_scaling={"type": rope_type, "factor": 2.0})
    with pytest.raises(ValueError, match=f"Unsupported rope type '{rope_type}'"):
        phi3.rope_theta(config)


def _no_network(*args, **kwargs):
    raise AssertionError("tried to open a network connection")


def test_phi3_official_config_needs_no_network(monkeypatch):
    monkeypatch.setattr(socket, "socket", _no_network)
    assert get_official_model_name("phi-3") == PHI3_NAME
    cfg = get_pretrained_model_config("phi-3")
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_head) == (32, 3072, 32, 96)
    assert cfg.n_key_value_heads is None  # 32 key/value heads: classic per-head W_K/W_V
    assert (cfg.d_mlp, cfg.d_vocab, cfg.n_ctx, cfg.eps) == (8192, 32064, 4096, 1e-5)
    assert (cfg.rotary_base, cfg.rotary_dim) == (10000.0, 96)
    assert cfg.use_local_attn and cfg.window_size == 2047 and cfg.attn_types == ["local"] * 32
    assert cfg.act_fn == "silu" and cfg.gated_mlp and cfg.normalization_type == "RMS"
    assert cfg.final_rms and cfg.rms_norm_cast_before_weight
    assert cfg.original_architecture == "Phi3ForCausalLM"


def test_phi3_config_as_shipped_loads_and_refuses_attention_bias():
    """The official config.json carries auto_map (remote code) and attention_bias=false;
    HF's Phi-3 builds qkv_proj without a bias either way, so True is refused."""
    from transformers import AutoConfig

    shipped = get_official_model_name("phi-3")
    fields = {"auto_map": {"AutoConfig": "configuration_phi3.Phi3Config"}, "rope_scaling": None}
    config = AutoConfig.for_model("phi3", **fields, attention_bias=False)
    assert get_pretrained_model_config(shipped, hf_cfg=config).original_architecture == (
        "Phi3ForCausalLM"
    )
    config = AutoConfig.for_model("phi3", **fields, attention_bias=True)
    with pytest.raises(ValueError, match="attention_bias=True is not supported"):
        get_pretrained_model_config(shipped, hf_cfg=config)
