"""Circuit analysis on a grouped-query model (4 query heads on 2 key/value heads, RMSNorm,
rotary, gated MLP): query head h reads key/value head h // group everywhere."""

import pytest
import torch

from tests.analysis_models import D_MODEL, N_HEADS, N_KV, N_LAYERS, build, tokens
from tests.helpers import assert_close
from transformer_lens import FactoredMatrix, utils

GROUP = N_HEADS // N_KV
BATCH, POS = 2, 7


@pytest.fixture(scope="module")
def grouped():
    model = build("grouped")
    _, cache = model.run_with_cache(tokens(BATCH, POS))
    return model, cache


def scores_from(rot_q, rot_k, attn_scale):
    scores = torch.einsum("bqhd,bkhd->bhqk", rot_q, rot_k) / attn_scale
    causal = torch.ones(POS, POS, dtype=torch.bool).tril()
    return scores.masked_fill(~causal, float("-inf"))


@pytest.mark.parametrize("layer", range(N_LAYERS))
def test_attention_scores_from_rotated_q_k_through_the_expanded_layout(grouped, layer):
    model, cache = grouped
    rot_q, rot_k = cache["rot_q", layer], cache["rot_k", layer]
    assert rot_q.shape[2] == N_HEADS and rot_k.shape[2] == N_KV
    expanded = rot_k.repeat_interleave(GROUP, dim=2)
    recomputed = scores_from(rot_q, expanded, model.cfg.attn_scale)
    cached = cache["attn_scores", layer]
    allowed = torch.isfinite(cached)
    assert torch.equal(allowed, torch.isfinite(recomputed))
    assert_close(recomputed[allowed], cached[allowed], 1e-5, "repeat_interleave layout")
    # Tiling (query head h reading kv head h % n_kv) is the classic mistake; it must differ.
    tiled = scores_from(rot_q, rot_k.repeat(1, 1, GROUP, 1), model.cfg.attn_scale)
    assert (tiled[allowed] - cached[allowed]).abs().max() > 1e-3


@pytest.mark.parametrize("layer", range(N_LAYERS))
def test_expanded_W_K_W_V_give_each_query_head_its_key_value_head(grouped, layer):
    model, cache = grouped
    attn = model.blocks[layer].attn
    for expanded, stored in ((model.W_K[layer], attn._W_K), (model.W_V[layer], attn._W_V)):
        assert expanded.shape == (N_HEADS, D_MODEL, model.cfg.d_head)
        for head in range(N_HEADS):
            assert torch.equal(expanded[head], stored[head // GROUP])
    # RMSNorm's hook_normalized is taken before its weight.
    ln1_out = cache["normalized", layer, "ln1"] * model.blocks[layer].ln1.w
    keys = torch.einsum("bpm,hmd->bphd", ln1_out, model.W_K[layer]) + model.b_K[layer]
    expected = cache["k", layer].repeat_interleave(GROUP, dim=2)
    assert_close(keys.detach(), expected, 1e-5, "keys through the expanded W_K")


def brute_force_score(left: torch.Tensor, right: torch.Tensor) -> float:
    product = torch.linalg.matrix_norm(left @ right)
    return float(product / (torch.linalg.matrix_norm(left) * torch.linalg.matrix_norm(right)))


@pytest.mark.parametrize("mode", ["Q", "K", "V"])
def test_all_composition_scores(grouped, mode):
    model, _ = grouped
    scores = model.all_composition_scores(mode).detach()
    assert scores.shape == (N_LAYERS, N_HEADS, N_LAYERS, N_HEADS)
    layer = torch.arange(N_LAYERS)
    later = (layer[:, None] < layer[None, :])[:, None, :, None].expand_as(scores)
    assert (scores[~later] == 0).all()
    assert (scores[later] > 0).all()
    with torch.no_grad():
        first, second = model.blocks[0].attn, model.blocks[1].attn
        for writer, reader in [(0, 3), (1, 2), (3, 0)]:
            ov = first._W_V[writer // GROUP] @ first.W_O[writer]
            query, key = second.W_Q[reader], second._W_K[reader // GROUP]
            readers = {
                "Q": query @ key.T,
                "K": key @ query.T,
                "V": second._W_V[reader // GROUP] @ second.W_O[reader],
            }
            expected = brute_force_score(ov, readers[mode])
            assert float(scores[0, writer, 1, reader]) == pytest.approx(expected, rel=1e-4)


def test_composition_scores_util_without_broadcast():
    torch.manual_seed(0)
    left = FactoredMatrix(torch.randn(3, 10, 4), torch.randn(3, 4, 10))
    right = FactoredMatrix(torch.randn(3, 10, 5), torch.randn(3, 5, 10))
    scores = utils.composition_scores(left, right, broadcast_dims=False)
    assert scores.shape == (3,)
    for i in range(3):
        assert float(scores[i]) == pytest.approx(
            brute_force_score(left.AB[i], right.AB[i]), rel=1e-4
        )
    assert utils.composition_scores(left, right).shape == (3, 3)
    with pytest.raises(ValueError, match="compose"):
        utils.composition_scores(left, FactoredMatrix(torch.randn(7, 2), torch.randn(2, 3)))


@pytest.mark.parametrize("kind", ["grouped", "gpt2_like"])
def test_accumulated_bias_sums_the_biases_below(kind):
    model = build(kind)
    b_O, b_out = model.b_O.detach(), model.b_out.detach()
    for layer in range(N_LAYERS + 1):
        expected = (b_O[:layer] + b_out[:layer]).sum(0)
        assert_close(model.accumulated_bias(layer).detach(), expected, 1e-6, f"layer {layer}")
        attn_only = b_O[:layer].sum(0)
        got = model.accumulated_bias(layer, include_mlp_biases=False).detach()
        assert_close(got, attn_only, 1e-6, f"attention biases below {layer}")
        if layer < N_LAYERS:
            got = model.accumulated_bias(layer, mlp_input=True).detach()
            assert_close(got, expected + b_O[layer], 1e-6, f"mlp input of {layer}")
    with pytest.raises(ValueError, match="mlp_input"):
        model.accumulated_bias(N_LAYERS, mlp_input=True)
    with pytest.raises(ValueError, match="layer"):
        model.accumulated_bias(N_LAYERS + 1)


def test_tokens_to_residual_directions(grouped):
    model, _ = grouped
    W_U = model.W_U.detach()
    assert torch.equal(model.tokens_to_residual_directions(5).detach(), W_U[:, 5])
    assert torch.equal(model.tokens_to_residual_directions(torch.tensor(5)).detach(), W_U[:, 5])
    batch = torch.tensor([[1, 2, 3], [4, 5, 6]])
    directions = model.tokens_to_residual_directions(batch).detach()
    assert directions.shape == (2, 3, D_MODEL)
    assert torch.equal(directions[1, 2], W_U[:, 6])
    assert model.tokens_to_residual_directions([1, 2]).shape == (2, D_MODEL)
    with pytest.raises(ValueError, match="no tokenizer"):
        model.tokens_to_residual_directions("hello")


@pytest.mark.parametrize("flag", ["set_use_split_qkv_input", "set_ungroup_grouped_query_attention"])
def test_decompositions_hold_under_grouped_hook_modes(flag):
    model = build("grouped", processed=True)
    getattr(model, flag)(True)
    logits, cache = model.run_with_cache(tokens(BATCH, POS))
    stack = cache.get_full_resid_decomposition(pos_slice=-1)
    assert_close(stack.sum(0), cache["resid_post", -1][:, -1], 1e-5, flag)
    attrs = cache.logit_attrs(stack, 3, incorrect_tokens=8, pos_slice=-1)
    bias = model.b_U[3] - model.b_U[8]
    expected = (logits[:, -1, 3] - logits[:, -1, 8] - bias).detach()
    assert_close(attrs.sum(0), expected, 1e-4, f"logit difference with {flag}")
    heads = cache.stack_head_results(1)
    assert heads.shape == (N_HEADS, BATCH, POS, D_MODEL)
