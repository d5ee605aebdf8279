"""Classic HookedTransformer methods: the embedding entry points (input_to_embed,
get_residual, get_pos_offset, PosEmbed's classic call) and the state-dict steps."""

import pytest
import torch

from tests.tiny_models import GPT2_LIKE, GROUPED, TOKENS, build
from transformer_lens import weight_processing
from transformer_lens.past_key_value_caching import HookedTransformerKeyValueCache


def test_input_to_embed_gives_the_first_residual_of_the_forward():
    model = build(GPT2_LIKE)
    residual, tokens, shortformer, mask = model.input_to_embed(TOKENS)
    expected = model.W_E[TOKENS] + model.W_pos[: TOKENS.shape[1]]
    torch.testing.assert_close(residual, expected, rtol=0, atol=0)
    assert torch.equal(tokens, TOKENS) and shortformer is None and mask is None
    _, cache = model.run_with_cache(TOKENS, names_filter="blocks.0.hook_resid_pre")
    assert torch.equal(cache["resid_pre", 0], residual)


def test_input_to_embed_of_a_rotary_model_is_the_token_embedding():
    model = build(GROUPED)
    residual, _, _, _ = model.input_to_embed(TOKENS[0])
    assert torch.equal(residual, model.W_E[TOKENS[:1]])


def test_shortformer_position_embedding_is_returned_apart():
    model = build(GPT2_LIKE, positional_embedding_type="shortformer")
    residual, _, shortformer, _ = model.input_to_embed(TOKENS)
    assert torch.equal(residual, model.W_E[TOKENS])
    assert torch.equal(shortformer, model.W_pos[:6].expand(2, 6, -1))


def test_get_residual_follows_the_position_offset_and_the_padding():
    model = build(GPT2_LIKE)
    embed = model.W_E[TOKENS]
    shifted = model.get_residual(embed, 3, return_shortformer_pos_embed=False)
    torch.testing.assert_close(shifted, embed + model.W_pos[3:9], rtol=0, atol=0)
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1], [1] * 8])
    padded, shortformer = model.get_residual(embed, 2, attention_mask=mask)
    assert shortformer is None
    torch.testing.assert_close(padded[0], embed[0] + model.W_pos[:6], rtol=0, atol=0)
    torch.testing.assert_close(padded[1], embed[1] + model.W_pos[2:8], rtol=0, atol=0)
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model.get_residual(embed, 0, attention_mask=mask)


def test_get_pos_offset_counts_the_cached_positions_and_checks_the_batch():
    model = build(GROUPED)
    assert model.get_pos_offset(None, 2) == 0
    cache = HookedTransformerKeyValueCache.init_cache(model.cfg, "cpu", 2)
    model(TOKENS[:, :4], past_kv_cache=cache)
    assert model.get_pos_offset(cache, 2) == 4
    for error in (AssertionError, ValueError):
        with pytest.raises(error, match="batch"):
            model.get_pos_offset(cache, 3)


def test_pos_embed_takes_classics_tokens_offset_and_mask():
    model = build(GPT2_LIKE)
    W_pos = model.W_pos
    assert torch.equal(model.pos_embed(TOKENS), W_pos[:6].expand(2, 6, -1))
    assert torch.equal(model.pos_embed(TOKENS, 2), W_pos[2:8].expand(2, 6, -1))
    mask = torch.tensor([[0, 1, 1, 1, 1, 1, 1], [1] * 7])
    embedded = model.pos_embed(TOKENS, past_kv_pos_offset=1, attention_mask=mask)
    assert torch.equal(embedded[0], W_pos[:6])
    assert torch.equal(embedded[1], W_pos[1:7])
    padded = model.pos_embed(TOKENS[:, :3], attention_mask=torch.tensor([[0, 0, 1], [1, 1, 1]]))
    assert torch.count_nonzero(padded[0, :2]) == 0  # padding gets zeros, as in classic
    assert torch.equal(padded[0, 2], W_pos[0])


@pytest.mark.parametrize(
    ("method", "function"),
    [
        ("center_writing_weights", weight_processing.center_writing_weights),
        ("center_unembed", weight_processing.center_unembed),
        ("fold_value_biases", weight_processing.fold_value_biases),
        ("refactor_factored_attn_matrices", weight_processing.refactor_factored_attn_matrices),
    ],
)
def test_state_dict_steps_return_a_new_dict_and_leave_the_model(method, function):
    model = build(GPT2_LIKE)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.b_V.normal_()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = getattr(model, method)(model.state_dict())
    expected = function(before, model.cfg)
    assert set(result) == set(expected)
    for key in expected:
        assert torch.equal(result[key], expected[key]), key
    assert any(not torch.equal(result[k], before[k]) for k in before)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_fold_layer_norm_keeps_the_log_probs_of_an_lnpre_model():
    model = build(GPT2_LIKE)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith((".w", ".b")):
                param.normal_(1.0 if name.endswith(".w") else 0.0, 0.3)
    folded = model.fold_layer_norm(model.state_dict())
    assert not any(k.endswith(("ln1.w", "ln1.b", "ln_final.w")) for k in folded)
    pre = build(GPT2_LIKE, normalization_type="LNPre")
    pre.load_state_dict(folded)
    torch.testing.assert_close(
        pre(TOKENS).log_softmax(-1), model(TOKENS).log_softmax(-1), rtol=0, atol=1e-5
    )


def test_fill_missing_keys_fills_from_the_models_own_weights():
    model = build(GPT2_LIKE)
    partial = {k: v for k, v in model.state_dict().items() if not k.startswith("blocks.1.")}
    filled = model.fill_missing_keys(partial)
    assert set(filled) == set(model.state_dict())
    assert torch.equal(filled["blocks.1.attn.W_Q"], model.blocks[1].attn.W_Q)
