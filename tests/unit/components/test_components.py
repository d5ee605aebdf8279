"""Components against references written here: rotary, norms, MLPs, attention masks, block wiring.

Each reference is plain torch (or Hugging Face for the rotary tables), never the code under test.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import assert_close
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.components import MLP, GatedMLP, LayerNorm, LayerNormPre, RMSNorm, RMSNormPre
from transformer_lens.components.attention import attention_input_plan, shared_across_heads
from transformer_lens.components.rotary import apply_rotary, inverse_frequencies, rotary_tables

BATCH, POS = 2, 10


def make_cfg(**overrides) -> HookedTransformerConfig:
    fields = dict(
        n_layers=1, d_model=32, n_ctx=16, d_head=8, n_heads=4, n_key_value_heads=2, d_vocab=50,
        act_fn="silu", normalization_type="RMS", positional_embedding_type="rotary",
        gated_mlp=True, seed=0, device="cpu",
    )  # fmt: skip
    fields.update(overrides)
    return HookedTransformerConfig(**fields)


def run_tiny(q_scale: float = 1.0, **overrides):
    model = HookedTransformer(make_cfg(**overrides))
    if q_scale != 1.0:
        with torch.no_grad():
            for block in model.blocks:
                block.attn.W_Q.mul_(q_scale)
    tokens = torch.randint(0, 50, (BATCH, POS), generator=torch.Generator().manual_seed(0))
    _, cache = model.run_with_cache(tokens)
    return model, cache


def randomize(module: torch.nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5 + 0.1)


def raw_scores(cache, layer: int, tile: bool = False) -> torch.Tensor:
    """q.k from cached rotated q/k, kv heads mapped to query heads, before any scaling."""
    q, k = cache[f"blocks.{layer}.attn.hook_rot_q"], cache[f"blocks.{layer}.attn.hook_rot_k"]
    group = q.shape[2] // k.shape[2]
    k = k.repeat(1, 1, group, 1) if tile else k.repeat_interleave(group, dim=2)
    return torch.einsum("bqhd,bkhd->bhqk", q.double(), k.double())


# ----------------------------------------------------------------------------- rotary


def complex_rotary(x, positions, base, rotary_dim, adjacent):
    """Pairs as complex numbers times exp(i * pos * inv_freq), in float64."""
    x = x.double()
    rot, rest = x[..., :rotary_dim], x[..., rotary_dim:]
    half = rotary_dim // 2
    if adjacent:
        real, imag = rot[..., 0::2], rot[..., 1::2]
    else:
        real, imag = rot[..., :half], rot[..., half:]
    inv_freq = base ** (-2.0 * torch.arange(half, dtype=torch.float64) / rotary_dim)
    angle = positions.double()[..., None, None] * inv_freq  # [batch, pos, 1, half]
    turned = torch.complex(real, imag) * torch.polar(torch.ones_like(angle), angle)
    if adjacent:
        out = torch.stack((turned.real, turned.imag), dim=-1).flatten(-2)
    else:
        out = torch.cat((turned.real, turned.imag), dim=-1)
    return torch.cat((out, rest), dim=-1)


@pytest.mark.parametrize("adjacent", [False, True], ids=["half_split", "adjacent_pairs"])
@pytest.mark.parametrize("rotary_dim", [16, 8], ids=["full", "partial"])
def test_apply_rotary_matches_complex_reference(adjacent, rotary_dim):
    cfg = make_cfg(
        d_head=16, rotary_dim=rotary_dim, rotary_adjacent_pairs=adjacent, rotary_base=500.0
    )
    sin, cos = rotary_tables(cfg, cfg.rotary_base)
    assert sin.shape == cos.shape == (cfg.n_ctx, rotary_dim)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, 6, 3, 16, generator=generator)
    positions = torch.randint(0, cfg.n_ctx, (BATCH, 6), generator=generator)
    out = apply_rotary(x, sin, cos, positions, adjacent)
    expected = complex_rotary(x, positions, cfg.rotary_base, rotary_dim, adjacent)
    assert_close(out, expected.float(), atol=1e-5, what="rotary vs complex reference")
    assert torch.equal(out[..., rotary_dim:], x[..., rotary_dim:])


@pytest.mark.parametrize("theta", [10000.0, 500000.0])
def test_rotary_tables_equal_hf_llama_rotary_embedding(theta):
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    cfg = make_cfg(d_head=16, n_ctx=64, rotary_base=theta)
    hf_config = LlamaConfig(
        head_dim=16, hidden_size=64, num_attention_heads=4, rope_theta=theta,
        max_position_embeddings=64,
    )  # fmt: skip
    position_ids = torch.arange(64)[None]
    hf_cos, hf_sin = LlamaRotaryEmbedding(hf_config)(torch.zeros(1), position_ids)
    sin, cos = rotary_tables(cfg, theta)
    assert torch.equal(cos, hf_cos[0]) and torch.equal(sin, hf_sin[0])


def test_ntk_by_parts_frequencies_and_tables_match_hf_llama3():
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192, "rope_theta": 500000.0}  # fmt: skip
    hf_config = LlamaConfig(
        head_dim=128, hidden_size=512, num_attention_heads=4, rope_parameters=rope,
        max_position_embeddings=131072,
    )  # fmt: skip
    expected = ROPE_INIT_FUNCTIONS["llama3"](hf_config, "cpu")[0]
    cfg = make_cfg(d_head=128, d_model=512, n_ctx=64, rotary_base=500000.0,
                   use_NTK_by_parts_rope=True, NTK_by_parts_factor=8.0, NTK_original_ctx_len=8192,
                   NTK_by_parts_low_freq_factor=1.0, NTK_by_parts_high_freq_factor=4.0)  # fmt: skip
    actual = inverse_frequencies(cfg, 500000.0)
    wavelength = 2 * math.pi / expected
    # The test only means something if all three bands (kept, interpolated, divided) occur.
    assert (wavelength < 2048).any() and (wavelength > 8192).any()
    assert ((wavelength > 2048) & (wavelength < 8192)).any()
    assert actual.shape == expected.shape
    assert ((actual - expected).abs() / expected).max() <= 1e-6
    hf_cos, hf_sin = LlamaRotaryEmbedding(hf_config)(torch.zeros(1), torch.arange(64)[None])
    sin, cos = rotary_tables(cfg, 500000.0)
    assert torch.equal(cos, hf_cos[0]) and torch.equal(sin, hf_sin[0])


# ------------------------------------------------------------------------------ norms


def rms_reference(x, w, eps):
    x32 = x.float()
    out = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return out if w is None else out * w.float()


SHAPES = [(BATCH, 3, 32), (BATCH, 3, 4, 32)]


@pytest.mark.parametrize("shape", SHAPES, ids=["residual", "per_head"])
def test_layer_norms_match_functional_layer_norm(shape):
    cfg = make_cfg(normalization_type="LN", eps=1e-5)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 3 + 1
    norm = LayerNorm(cfg)
    randomize(norm)
    expected = F.layer_norm(x, (32,), norm.w, norm.b, eps=cfg.eps)
    with torch.no_grad():
        assert_close(norm(x), expected.detach(), atol=1e-6, what="LayerNorm")
    pre = F.layer_norm(x, (32,), eps=cfg.eps)
    assert_close(LayerNormPre(cfg)(x), pre, atol=1e-6, what="LayerNormPre")


@pytest.mark.parametrize("kind", [LayerNorm, LayerNormPre])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_layer_norm_equals_torch_kernel_bit_for_bit_until_the_scale_is_hooked(kind, dtype):
    """Unhooked, the norm is torch's layer_norm kernel (what HF's nn.LayerNorm runs), so the
    rounding is HF's; hooking hook_scale switches to the explicit computation, which
    agrees within float rounding and shows the scale."""
    cfg = make_cfg(normalization_type="LN", eps=1e-5, dtype=dtype)
    norm = kind(cfg)
    randomize(norm)
    x = (torch.randn(BATCH, 5, 32, generator=torch.Generator().manual_seed(0)) * 3 + 1).to(dtype)
    w, b = (norm.w, norm.b) if kind is LayerNorm else (None, None)
    with torch.no_grad():
        assert torch.equal(norm(x), F.layer_norm(x, (32,), w, b, eps=cfg.eps))
        seen = {}
        norm.hook_scale.add_hook(lambda t, hook: seen.setdefault("scale", t))
        hooked = norm(x)
    centred = x.float() - x.float().mean(-1, keepdim=True)
    expected_scale = (centred.pow(2).mean(-1, keepdim=True) + cfg.eps).sqrt()
    assert_close(seen["scale"], expected_scale, atol=1e-5, what="hook_scale")
    ulp = 2**-7 if dtype == torch.bfloat16 else 1e-6  # one bfloat16 ulp at |x| < 2
    assert_close(hooked.float(), norm(x).float(), atol=4 * ulp, what="hooked vs fused")


@pytest.mark.parametrize("shape", SHAPES, ids=["residual", "per_head"])
def test_rms_norms_match_reference_and_hook_scale(shape):
    cfg = make_cfg(eps=1e-5)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 3
    norm = RMSNorm(cfg)
    randomize(norm)
    seen = {}
    norm.hook_scale.add_hook(lambda t, hook: seen.setdefault("scale", t.clone()))
    with torch.no_grad():
        assert_close(norm(x), rms_reference(x, norm.w, cfg.eps), atol=1e-6, what="RMSNorm")
    assert_close(RMSNormPre(cfg)(x), rms_reference(x, None, cfg.eps), atol=1e-6, what="RMSPre")
    assert seen["scale"].shape == (*shape[:-1], 1)
    expected_scale = (x.pow(2).mean(-1, keepdim=True) + cfg.eps).sqrt()
    assert_close(seen["scale"], expected_scale, atol=1e-6, what="hook_scale")


@pytest.mark.parametrize("kind", [LayerNorm, LayerNormPre, RMSNorm, RMSNormPre])
def test_norms_keep_bfloat16_and_compute_in_float32(kind):
    cfg = make_cfg(eps=1e-5)
    norm = kind(cfg)
    randomize(norm)
    x = torch.randn(BATCH, 3, 32, generator=torch.Generator().manual_seed(0)) * 3 + 2
    x = x.to(torch.bfloat16)
    with torch.no_grad():
        out = norm(x)
        if kind in (LayerNorm, LayerNormPre):
            w, b = (norm.w, norm.b) if kind is LayerNorm else (None, None)
            expected = F.layer_norm(x.float(), (32,), w, b, eps=cfg.eps)
        else:
            expected = rms_reference(x, getattr(norm, "w", None), cfg.eps)
    assert out.dtype == torch.bfloat16
    # Rounded once from float32: within half a bfloat16 ulp (2^-8 relative) of the reference.
    assert ((out.float() - expected).abs() <= expected.abs() * 2**-8 + 1e-6).all()


def test_rms_norm_hooked_scale_doubled_halves_output():
    cfg = make_cfg()
    norm = RMSNorm(cfg)
    randomize(norm)
    x = torch.randn(BATCH, 3, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = norm(x)
        norm.hook_scale.add_hook(lambda t, hook: t * 2)
        hooked = norm(x)
    assert_close(hooked, plain / 2, atol=1e-6, what="doubled scale")


# ------------------------------------------------------------------------------- MLPs


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


ACTIVATIONS = {"relu": lambda x: x.clamp(min=0), "gelu_new": gelu_tanh,
               "gelu_pytorch_tanh": gelu_tanh, "silu": lambda x: x * torch.sigmoid(x)}  # fmt: skip


def run_mlp(module, x):
    seen = {}
    for name in ("hook_pre", "hook_pre_linear", "hook_post"):
        if hasattr(module, name):
            getattr(module, name).add_hook(lambda t, hook, n=name: seen.__setitem__(n, t))
    with torch.no_grad():
        return module(x), seen


@pytest.mark.parametrize("act_fn", ["gelu_new", "relu"])
def test_mlp_matches_reference(act_fn):
    cfg = make_cfg(d_model=16, d_mlp=24, act_fn=act_fn, gated_mlp=False)
    mlp = MLP(cfg)
    randomize(mlp)
    x = torch.randn(BATCH, 3, 16, generator=torch.Generator().manual_seed(1))
    out, seen = run_mlp(mlp, x)
    pre = x @ mlp.W_in + mlp.b_in
    post = ACTIVATIONS[act_fn](pre)
    assert_close(out, (post @ mlp.W_out + mlp.b_out).detach(), atol=1e-5, what="MLP out")
    assert_close(seen["hook_pre"], pre.detach(), atol=1e-5, what="hook_pre")
    assert_close(seen["hook_post"], post.detach(), atol=1e-5, what="hook_post")


@pytest.mark.parametrize("act_fn", ["silu", "gelu_pytorch_tanh"])
def test_gated_mlp_matches_reference(act_fn):
    cfg = make_cfg(d_model=16, d_mlp=24, act_fn=act_fn)
    mlp = GatedMLP(cfg)
    randomize(mlp)
    x = torch.randn(BATCH, 3, 16, generator=torch.Generator().manual_seed(1))
    out, seen = run_mlp(mlp, x)
    gate, linear = x @ mlp.W_gate, x @ mlp.W_in
    post = ACTIVATIONS[act_fn](gate) * linear + mlp.b_in
    assert_close(out, (post @ mlp.W_out + mlp.b_out).detach(), atol=1e-5, what="GatedMLP")
    for name, expected in (("hook_pre", gate), ("hook_pre_linear", linear), ("hook_post", post)):
        assert seen[name].shape == (BATCH, 3, 24)
        assert_close(seen[name], expected.detach(), atol=1e-5, what=name)


# -------------------------------------------------------------------- attention masks


QUERY, KEY = torch.arange(POS)[:, None], torch.arange(POS)[None, :]


def test_causal_mask_and_pattern_rows():
    _, cache = run_tiny()
    scores, pattern = cache["blocks.0.attn.hook_attn_scores"], cache["blocks.0.attn.hook_pattern"]
    above = (KEY > QUERY).expand_as(scores)
    assert torch.isneginf(scores[above]).all() and torch.isfinite(scores[~above]).all()
    assert_close(pattern.sum(-1), torch.ones(BATCH, 4, POS), atol=1e-6, what="pattern rows")


def test_sliding_window_sees_last_three_keys():
    _, cache = run_tiny(use_local_attn=True, window_size=3, attn_types=["local"])
    scores = cache["blocks.0.attn.hook_attn_scores"]
    visible = ((KEY > QUERY - 3) & (KEY <= QUERY)).expand_as(scores)
    assert torch.equal(torch.isfinite(scores), visible)
    assert torch.isneginf(scores[~visible]).all()


def test_bidirectional_has_no_mask():
    _, cache = run_tiny(attention_dir="bidirectional")
    assert torch.isfinite(cache["blocks.0.attn.hook_attn_scores"]).all()


def test_attention_scores_soft_cap():
    # Raw scores reach ~16: the cap bites, yet tanh stays below 1 in float32 (it rounds to
    # exactly 1 past ~8.7, where |s| < 5 could not hold for any implementation).
    _, cache = run_tiny(q_scale=8.0, attn_scores_soft_cap=5.0)
    scores = cache["blocks.0.attn.hook_attn_scores"]
    raw = raw_scores(cache, 0) / math.sqrt(8)
    finite = torch.isfinite(scores)
    assert 10 < raw[finite].abs().max() < 40
    assert (scores[finite].abs() < 5).all()
    expected = 5 * torch.tanh(raw / 5)
    assert_close(scores[finite], expected[finite], atol=1e-5, what="soft-capped scores")


def test_scale_attn_by_inverse_layer_idx():
    _, cache = run_tiny(n_layers=2, scale_attn_by_inverse_layer_idx=True)
    for layer in (0, 1):
        scores = cache[f"blocks.{layer}.attn.hook_attn_scores"]
        expected = raw_scores(cache, layer) / (math.sqrt(8) * (layer + 1))
        finite = torch.isfinite(scores)
        assert_close(scores[finite], expected[finite], atol=1e-6, what=f"layer {layer}")


def test_use_attn_scale_false_divides_by_one():
    _, cache = run_tiny(use_attn_scale=False)
    scores = cache["blocks.0.attn.hook_attn_scores"]
    finite = torch.isfinite(scores)
    assert_close(scores[finite], raw_scores(cache, 0)[finite], atol=1e-6, what="unscaled")


def test_query_head_reads_kv_head_h_floordiv_group():
    _, cache = run_tiny()
    scores = cache["blocks.0.attn.hook_attn_scores"]
    finite = torch.isfinite(scores)
    interleaved = raw_scores(cache, 0) / math.sqrt(8)
    assert_close(scores[finite], interleaved[finite], atol=1e-6, what="repeat_interleave")
    tiled = raw_scores(cache, 0, tile=True) / math.sqrt(8)
    assert (scores[finite] - tiled[finite]).abs().max() > 1e-3, "tiled layout also matches"


# --------------------------------------------------------------------- block wiring


def test_standard_block_wiring():
    _, cache = run_tiny()
    pre, mid, post = (cache[f"blocks.0.hook_resid_{n}"] for n in ("pre", "mid", "post"))
    assert torch.equal(mid, pre + cache["blocks.0.hook_attn_out"])
    assert torch.equal(post, mid + cache["blocks.0.hook_mlp_out"])


def test_parallel_attn_mlp_wiring():
    model, cache = run_tiny(parallel_attn_mlp=True)
    pre, post = cache["blocks.0.hook_resid_pre"], cache["blocks.0.hook_resid_post"]
    attn_out, mlp_out = cache["blocks.0.hook_attn_out"], cache["blocks.0.hook_mlp_out"]
    assert torch.equal(post, (attn_out + mlp_out) + pre)  # HF's order of the sums
    assert "blocks.0.hook_resid_mid" not in model.hook_dict


def test_attn_only_wiring():
    model, cache = run_tiny(attn_only=True)
    pre, post = cache["blocks.0.hook_resid_pre"], cache["blocks.0.hook_resid_post"]
    assert torch.equal(post, pre + cache["blocks.0.hook_attn_out"])
    assert not hasattr(model.blocks[0], "mlp")
    assert not [name for name in cache.keys() if "mlp" in name]


def test_post_norms_wrap_attention_and_mlp_outputs():
    model = HookedTransformer(make_cfg(use_normalization_before_and_after=True))
    block = model.blocks[0]
    randomize(block.ln1_post, seed=1)
    randomize(block.ln2_post, seed=2)
    tokens = torch.randint(0, 50, (BATCH, POS), generator=torch.Generator().manual_seed(0))
    _, cache = model.run_with_cache(tokens)
    assert {f"blocks.0.ln{i}_post.hook_normalized" for i in (1, 2)} <= set(cache.keys())
    z = cache["blocks.0.attn.hook_z"].reshape(BATCH, POS, -1)
    W_O = block.attn.W_O.reshape(-1, 32)
    with torch.no_grad():
        attn_out = block.ln1_post(z @ W_O + block.attn.b_O)
        mlp_out = block.ln2_post(block.mlp(block.ln2(cache["blocks.0.hook_resid_mid"])))
    assert_close(cache["blocks.0.hook_attn_out"], attn_out, atol=1e-5, what="attn_out")
    assert_close(cache["blocks.0.hook_mlp_out"], mlp_out, atol=1e-5, what="mlp_out")


def test_final_rms_with_layer_norm_blocks():
    model = HookedTransformer(make_cfg(normalization_type="LN", final_rms=True))
    assert type(model.ln_final) is RMSNorm
    assert type(model.blocks[0].ln1) is LayerNorm


def test_standard_positional_embedding_hook():
    model, cache = run_tiny(normalization_type="LN", positional_embedding_type="standard")
    pos_embed = cache["hook_pos_embed"]
    assert pos_embed.shape == (BATCH, POS, 32)
    assert torch.equal(pos_embed, model.pos_embed.W_pos[:POS].detach().expand(BATCH, -1, -1))


# ------------------------------------------------------------------ attention inputs


def test_shared_across_heads_detects_broadcast_views():
    x = torch.randn(BATCH, 3, 32)
    view = x.unsqueeze(2).expand(-1, -1, 4, -1)
    shared = shared_across_heads(view)
    assert shared is not None and torch.equal(shared, x)
    assert shared_across_heads(view.clone()) is None
    single = x.unsqueeze(2).clone()
    assert torch.equal(shared_across_heads(single), x)


@pytest.mark.parametrize(
    "n_kv, split, ungroup, attn_in, expected",
    [(2, False, False, False, ("shared", 4, 2)), (2, False, True, False, ("shared", 4, 4)),
     (2, True, False, False, ("split", 4, 2)), (2, True, True, False, ("split", 4, 4)),
     (2, False, True, True, ("attn_in", 4, 4)), (None, True, False, False, ("split", 4, 4)),
     (None, False, False, True, ("attn_in", 4, 4)), (4, False, False, True, ("attn_in", 4, 4))],
)  # fmt: skip
def test_attention_input_plan_head_counts(n_kv, split, ungroup, attn_in, expected):
    cfg = make_cfg(n_key_value_heads=n_kv)
    cfg.use_split_qkv_input, cfg.ungroup_grouped_query_attention = split, ungroup
    cfg.use_attn_in = attn_in
    assert tuple(attention_input_plan(cfg)) == expected


@pytest.mark.parametrize(
    "n_kv, split, ungroup, match",
    [(2, False, False, "use_attn_in"), (2, True, True, "cannot both"), (None, True, False, "both")],
)
def test_attention_input_plan_rejects_impossible_combinations(n_kv, split, ungroup, match):
    cfg = make_cfg(n_key_value_heads=n_kv)
    cfg.use_split_qkv_input, cfg.ungroup_grouped_query_attention = split, ungroup
    cfg.use_attn_in = True
    with pytest.raises(ValueError, match=match):
        attention_input_plan(cfg)
