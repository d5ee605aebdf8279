"""Component constructors as classic TransformerLens has them: a dict config is converted at
the edge, the MLP variants share the CanBeUsedAsMLP base, classic's module paths import, and
bad configs raise errors that are both AssertionError and ValueError where classic asserted."""

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import assert_close
from transformer_lens import HookedTransformerConfig
from transformer_lens.components import (
    MLP,
    Attention,
    Embed,
    GatedMLP,
    GroupedQueryAttention,
    LayerNorm,
    LayerNormPre,
    MoE,
    PosEmbed,
    RMSNorm,
    RMSNormPre,
    TransformerBlock,
    Unembed,
)
from transformer_lens.components.mlps.can_be_used_as_mlp import CanBeUsedAsMLP
from transformer_lens.components.mlps.moe import MoEGatedMLP

D_MODEL, D_MLP, D_HEAD, N_HEADS = 16, 24, 4, 4
FIELDS = dict(n_layers=2, d_model=D_MODEL, n_ctx=8, d_head=D_HEAD, n_heads=N_HEADS, d_mlp=D_MLP,
              d_vocab=30, act_fn="gelu_new", device="cpu")  # fmt: skip


def fields(**overrides: object) -> dict:
    return {**FIELDS, **overrides}


def random_input(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def randomize(module: torch.nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5 + 0.1)


# ----- a dict config is converted on the way in -------------------------------------------
CONSTRUCTORS = {
    "Embed": lambda cfg: Embed(cfg),
    "PosEmbed": lambda cfg: PosEmbed(cfg),
    "LayerNorm": lambda cfg: LayerNorm(cfg),
    "LayerNorm_length": lambda cfg: LayerNorm(cfg, D_MLP),
    "LayerNormPre": lambda cfg: LayerNormPre(cfg),
    "RMSNorm": lambda cfg: RMSNorm(cfg, D_HEAD),
    "RMSNormPre": lambda cfg: RMSNormPre(cfg),
    "MLP": lambda cfg: MLP(cfg),
    "GatedMLP": lambda cfg: GatedMLP(cfg),
    "MoEGatedMLP": lambda cfg: MoEGatedMLP(cfg),
    "GroupedQueryAttention": lambda cfg: GroupedQueryAttention(cfg, "global", 1),
    "TransformerBlock": lambda cfg: TransformerBlock(cfg, 1),
}


@pytest.mark.parametrize("name", list(CONSTRUCTORS))
def test_component_built_from_a_dict_has_a_config_and_the_same_parameters(name):
    overrides = dict(n_key_value_heads=2) if name == "GroupedQueryAttention" else {}
    from_dict = CONSTRUCTORS[name](fields(**overrides))
    from_config = CONSTRUCTORS[name](HookedTransformerConfig(**fields(**overrides)))
    assert isinstance(from_dict.cfg, HookedTransformerConfig)
    assert from_dict.cfg.d_model == D_MODEL
    shapes = {key: tuple(value.shape) for key, value in from_dict.state_dict().items()}
    assert shapes == {key: tuple(value.shape) for key, value in from_config.state_dict().items()}


@pytest.mark.parametrize("build", [lambda cfg: Attention(cfg), lambda cfg: Unembed(cfg)])
def test_attention_and_unembed_accept_a_dict(build):
    assert isinstance(build(fields()).cfg, HookedTransformerConfig)


def test_embed_from_a_dict_picks_rows_of_W_E():
    embed = Embed(fields())
    randomize(embed)
    tokens = torch.tensor([[3, 0, 29]])
    assert_close(embed(tokens), embed.W_E[tokens], atol=0, what="embed")


def test_norms_from_a_dict_match_torch_references():
    x = random_input(2, 3, D_MLP)
    norm = LayerNorm(fields(eps=1e-3), D_MLP)
    randomize(norm)
    expected = F.layer_norm(x, (D_MLP,), norm.w, norm.b, eps=1e-3)
    assert_close(norm(x), expected, atol=1e-5, what="LayerNorm")
    rms = RMSNorm(fields(eps=1e-3), D_MLP)
    randomize(rms)
    expected = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-3) * rms.w
    assert_close(rms(x), expected, atol=1e-5, what="RMSNorm")


def test_mlp_from_a_dict_matches_the_reference():
    mlp = MLP(fields(act_fn="relu"))
    randomize(mlp)
    x = random_input(2, 3, D_MODEL)
    expected = (x @ mlp.W_in + mlp.b_in).clamp(min=0) @ mlp.W_out + mlp.b_out
    assert_close(mlp(x), expected, atol=1e-5, what="MLP")


def test_block_from_a_dict_computes_what_the_block_from_a_config_does():
    from_config = TransformerBlock(HookedTransformerConfig(**fields()), 0)
    randomize(from_config)
    from_dict = TransformerBlock(fields(), 0)
    from_dict.load_state_dict(from_config.state_dict())
    resid, positions = random_input(2, 5, D_MODEL), torch.arange(5)[None]
    with torch.no_grad():
        assert_close(from_dict(resid, positions), from_config(resid, positions), atol=0)


# ----- CanBeUsedAsMLP ---------------------------------------------------------------------
@pytest.mark.parametrize("mlp_class", [MLP, GatedMLP, MoE])
def test_mlp_variants_share_the_classic_base(mlp_class):
    assert issubclass(mlp_class, CanBeUsedAsMLP)


@pytest.mark.parametrize("mlp_class", [MLP, GatedMLP])
def test_mlp_has_d_mlp_and_act_fn_but_no_solu_ln_parts(mlp_class):
    mlp = mlp_class(fields(act_fn="silu"))
    assert mlp.d_mlp == D_MLP
    x = random_input(5)
    assert_close(mlp.act_fn(x), x * torch.sigmoid(x), atol=1e-6, what="act_fn")
    assert not hasattr(mlp, "hook_mid") and not hasattr(mlp, "ln")


def solu_ln_reference(pre: torch.Tensor, ln: LayerNorm) -> torch.Tensor:
    mid = pre * pre.softmax(-1)
    return F.layer_norm(mid, (D_MLP,), ln.w, ln.b, eps=1e-5)


def test_solu_ln_mlp_normalizes_after_the_activation():
    mlp = MLP(fields(act_fn="solu_ln"))
    assert isinstance(mlp.ln, LayerNorm) and mlp.ln.w.shape == (D_MLP,)
    randomize(mlp)
    x = random_input(2, 3, D_MODEL)
    pre = x @ mlp.W_in + mlp.b_in
    expected = solu_ln_reference(pre, mlp.ln) @ mlp.W_out + mlp.b_out
    assert_close(mlp(x), expected, atol=1e-5, what="solu_ln MLP")


def test_solu_ln_gated_mlp_keeps_the_linear_branch_and_b_in():
    mlp = GatedMLP(fields(act_fn="solu_ln"))
    randomize(mlp)
    x = random_input(2, 3, D_MODEL)
    post = solu_ln_reference(x @ mlp.W_gate, mlp.ln) * (x @ mlp.W_in) + mlp.b_in
    assert_close(mlp(x), post @ mlp.W_out + mlp.b_out, atol=1e-5, what="solu_ln GatedMLP")


def test_solu_ln_of_a_folded_model_uses_layer_norm_pre():
    mlp = MLP(fields(act_fn="solu_ln", normalization_type="LNPre"))
    assert isinstance(mlp.ln, LayerNormPre)
    assert "ln.w" not in mlp.state_dict()


def test_mlp_without_d_mlp_names_it():
    with pytest.raises(ValueError, match="d_mlp"):
        MLP(fields(attn_only=True, d_mlp=None, act_fn=None))


# ----- MoE --------------------------------------------------------------------------------
def test_moe_gated_mlp_matches_the_mixtral_expert():
    expert = MoEGatedMLP(fields(act_fn="silu"))
    assert set(expert.state_dict()) == {"W_in.weight", "W_out.weight", "W_gate.weight"}
    randomize(expert)
    x = random_input(6, D_MODEL)
    gate, linear = x @ expert.W_gate.weight.T, x @ expert.W_in.weight.T
    expected = (F.silu(gate) * linear) @ expert.W_out.weight.T
    seen = {}
    for name in ("hook_gate", "hook_pre", "hook_post"):
        getattr(expert, name).add_hook(lambda t, hook, n=name: seen.__setitem__(n, t))
    with torch.no_grad():
        assert_close(expert(x), expected, atol=1e-5, what="expert")
    assert_close(seen["hook_gate"], gate, atol=1e-5, what="hook_gate")
    assert_close(seen["hook_pre"], linear, atol=1e-5, what="hook_pre")


@pytest.mark.parametrize("error", [AssertionError, ValueError])
def test_moe_without_experts_is_refused_as_classic_asserts(error):
    with pytest.raises(error, match="num_experts"):
        MoE(fields())


@pytest.mark.parametrize("error", [AssertionError, ValueError])
def test_moe_with_more_experts_per_token_than_experts_is_refused(error):
    with pytest.raises(error, match=r"experts_per_token \(3\) must not exceed num_experts \(2\)"):
        MoE(fields(num_experts=2, experts_per_token=3))


# ----- grouped-query attention ------------------------------------------------------------
@pytest.mark.parametrize("error", [AssertionError, ValueError])
def test_grouped_query_attention_needs_n_key_value_heads(error):
    with pytest.raises(error, match="n_key_value_heads"):
        GroupedQueryAttention(fields())


def test_grouped_query_attention_from_a_dict_stores_kv_heads():
    attention = GroupedQueryAttention(fields(n_key_value_heads=2))
    assert attention._W_K.shape == (2, D_MODEL, D_HEAD)
    assert attention.W_K.shape == (N_HEADS, D_MODEL, D_HEAD)


# ----- classic module paths ---------------------------------------------------------------
def test_classic_norm_module_paths_export_the_same_classes():
    from transformer_lens.components.layer_norm_pre import LayerNormPre as FromPath
    from transformer_lens.components.rms_norm_pre import RMSNormPre as RMSFromPath

    assert FromPath is LayerNormPre and RMSFromPath is RMSNormPre


def test_gated_mlp_4bit_imports_and_refuses_construction_clearly():
    from transformer_lens.components.mlps.gated_mlp_4bit import GatedMLP4Bit

    assert issubclass(GatedMLP4Bit, CanBeUsedAsMLP)
    if importlib.util.find_spec("bitsandbytes") is None:
        with pytest.raises(ImportError, match="bitsandbytes"):
            GatedMLP4Bit(fields(gated_mlp=True))
    else:
        with pytest.raises(NotImplementedError, match="4-bit"):
            GatedMLP4Bit(fields(gated_mlp=True))
