"""Classic attention buffers: `attn.mask` and `attn.IGNORE` exist, read like classic's, and
assigning a new mask changes what the forward masks (circuit-tracer shares one mask object
across layers by reassigning it)."""

import pytest
import torch

from transformer_lens import HookedTransformer, HookedTransformerConfig


def build(**overrides) -> HookedTransformer:
    fields = dict(n_layers=2, d_model=32, n_ctx=10, d_head=8, n_heads=4, d_vocab=40)
    fields.update(act_fn="gelu", seed=0, n_key_value_heads=2, positional_embedding_type="rotary")
    fields.update(overrides)
    return HookedTransformer(HookedTransformerConfig(**fields))


TOKENS = torch.randint(0, 40, (2, 7), generator=torch.Generator().manual_seed(1))


def test_mask_and_ignore_read_like_classic_buffers():
    model = build(use_local_attn=True, window_size=3, attn_types=["global", "local"])
    causal = torch.ones(10, 10, dtype=torch.bool).tril()
    assert torch.equal(model.blocks[0].attn.mask, causal)
    assert torch.equal(model.blocks[1].attn.mask, causal.triu(1 - 3))
    assert model.blocks[0].attn.IGNORE.item() == float("-inf")
    assert "blocks.0.attn.mask" not in model.state_dict()


def test_a_shared_reassigned_default_mask_changes_nothing():
    model = build()
    before = model(TOKENS)
    shared = model.blocks[0].attn.mask
    for block in model.blocks:
        block.attn.mask = shared
    assert model.blocks[1].attn.mask is shared
    assert torch.equal(model(TOKENS), before)


def test_an_assigned_mask_is_what_the_forward_masks_with():
    model = build()
    mask = torch.ones(10, 10, dtype=torch.bool).tril()
    mask[:, 8] = False  # the bottom-right corner for 7 positions: key 5 is hidden ...
    mask[8, 8] = True  # ... from every query but its own
    model.blocks[0].attn.mask = mask
    _, cache = model.run_with_cache(TOKENS, names_filter="blocks.0.attn.hook_pattern")
    pattern = cache["pattern", 0]
    hidden_from = [q for q in range(7) if q != 5]
    assert torch.count_nonzero(pattern[:, :, hidden_from, 5]) == 0
    assert torch.all(pattern[:, :, 5, 5] > 0)
    torch.testing.assert_close(pattern.sum(-1), torch.ones_like(pattern.sum(-1)))


def test_an_all_true_mask_makes_a_causal_model_bidirectional():
    causal = build()
    bidirectional = build(attention_dir="bidirectional")
    bidirectional.load_state_dict(causal.state_dict())
    for block in causal.blocks:
        block.attn.mask = torch.ones(10, 10, dtype=torch.bool)
    torch.testing.assert_close(causal(TOKENS), bidirectional(TOKENS), rtol=0, atol=0)


def test_fused_path_honours_an_assigned_mask():
    eager, fused = build(), build(use_fused_attention=True)
    for model in (eager, fused):
        for block in model.blocks:
            block.attn.mask = torch.ones(10, 10, dtype=torch.bool)
    torch.testing.assert_close(fused(TOKENS), eager(TOKENS), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "bad", [torch.ones(10, 10), torch.ones(10, dtype=torch.bool), "causal"], ids=str
)
def test_a_mask_that_is_not_a_2d_bool_tensor_is_refused(bad):
    with pytest.raises(ValueError, match="2-D bool tensor"):
        build().blocks[0].attn.mask = bad


def test_a_mask_too_small_for_the_input_raises():
    model = build()
    model.blocks[0].attn.mask = torch.ones(4, 4, dtype=torch.bool).tril()
    with pytest.raises(ValueError, match=r"shape \(4, 4\), too small for 7 queries"):
        model(TOKENS)
