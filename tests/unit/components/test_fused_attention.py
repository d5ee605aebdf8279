"""The fused scaled_dot_product_attention path: same numbers as the eager path, and it
gives way to the eager path as soon as any hook inside the attention is active."""

import pytest
import torch

from tests.helpers import assert_close
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.past_key_value_caching import HookedTransformerKeyValueCache

VARIANTS = {
    "gqa-rotary": dict(n_key_value_heads=2, positional_embedding_type="rotary"),
    "mqa-rotary": dict(n_key_value_heads=1, positional_embedding_type="rotary"),
    "mha-standard": dict(positional_embedding_type="standard"),
    "local-window": dict(
        n_key_value_heads=2,
        positional_embedding_type="rotary",
        use_local_attn=True,
        window_size=3,
        attn_types=["local", "global"],
    ),
    "bidirectional": dict(positional_embedding_type="rotary", attention_dir="bidirectional"),
}
INTERNAL_HOOKS = ["hook_q", "hook_k", "hook_v", "hook_rot_q", "hook_rot_k", "hook_attn_scores", "hook_pattern", "hook_z"]  # fmt: skip


def build(**overrides) -> HookedTransformer:
    """A model with the fused path opted in (the default is eager)."""
    fields = dict(n_layers=2, d_model=32, n_ctx=32, d_head=8, n_heads=4, d_vocab=50)
    fields.update(act_fn="silu", normalization_type="RMS", gated_mlp=True, seed=0)
    fields.update({"use_fused_attention": True, **overrides})
    return HookedTransformer(HookedTransformerConfig(**fields))


def eager_and_fused(model: HookedTransformer, *args, **kwargs):
    fused = model(*args, **kwargs)
    model.cfg.use_fused_attention = False
    try:
        return model(*args, **kwargs), fused
    finally:
        model.cfg.use_fused_attention = True


TOKENS = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(0))


def test_eager_attention_is_the_default_so_hooks_never_change_the_bits():
    model = build(**VARIANTS["gqa-rotary"], use_fused_attention=False)
    assert HookedTransformerConfig.__dataclass_fields__["use_fused_attention"].default is False
    plain = model(TOKENS)
    _, cache = model.run_with_cache(TOKENS)
    hooked = model.run_with_hooks(TOKENS, fwd_hooks=[(lambda name: True, lambda x, hook: x)])
    cached_logits, _ = model.run_with_cache(TOKENS)
    assert torch.equal(plain, hooked) and torch.equal(plain, cached_logits)
    assert len(cache) > 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_fused_path_matches_eager(variant):
    eager, fused = eager_and_fused(build(**VARIANTS[variant]), TOKENS)
    assert not torch.equal(eager, fused) or variant == "mha-standard"  # really another kernel
    assert_close(fused, eager, 1e-5, f"{variant}: fused vs eager")


@pytest.mark.parametrize("variant", ["gqa-rotary", "mha-standard"])
def test_fused_path_matches_eager_with_left_padding(variant):
    mask = torch.ones_like(TOKENS)
    mask[0, :4] = 0
    eager, fused = eager_and_fused(build(**VARIANTS[variant]), TOKENS, attention_mask=mask)
    assert not fused.isnan().any()
    assert_close(fused, eager, 1e-5, "padded fused vs eager")


def test_fused_path_matches_eager_with_a_key_value_cache():
    model = build(**VARIANTS["gqa-rotary"])
    outputs = []
    for fused in (True, False):
        model.cfg.use_fused_attention = fused
        cache = HookedTransformerKeyValueCache.init_cache(model.cfg, "cpu", 2)
        steps = [model(TOKENS[:, :7], past_kv_cache=cache)]
        steps += [model(TOKENS[:, i : i + 1], past_kv_cache=cache) for i in range(7, 12)]
        outputs.append(torch.cat(steps, dim=1))
    assert_close(outputs[0], outputs[1], 1e-5, "cached fused vs cached eager")


@pytest.mark.parametrize("hook", INTERNAL_HOOKS)
def test_any_internal_hook_switches_to_the_eager_path(hook):
    model = build(**VARIANTS["gqa-rotary"])
    attention = model.blocks[1].attn
    assert attention._fused_path_allowed()
    seen = []
    with model.hooks(fwd_hooks=[(f"blocks.1.attn.{hook}", lambda x, hook: seen.append(1))]):
        assert not attention._fused_path_allowed()
        model(TOKENS)
    assert seen == [1]
    assert attention._fused_path_allowed()


def test_pattern_hook_sees_the_eager_pattern_and_can_edit_it():
    model = build(**VARIANTS["gqa-rotary"])
    baseline = model(TOKENS)

    def uniform_over_the_past(pattern, hook):
        causal = torch.ones_like(pattern).tril()
        return causal / causal.sum(-1, keepdim=True)

    edited = model.run_with_hooks(
        TOKENS, fwd_hooks=[("blocks.0.attn.hook_pattern", uniform_over_the_past)]
    )
    assert (edited - baseline).abs().max() > 1e-3


def test_soft_capped_attention_always_takes_the_eager_path():
    model = build(**VARIANTS["gqa-rotary"], attn_scores_soft_cap=2.0)
    assert not model.blocks[0].attn._fused_path_allowed()


def test_zero_biases_are_skipped_only_while_they_stay_zero():
    """Without gradients an all-zero bias is skipped (it would only cost an extra pass);
    an in-place edit is seen at once through the tensor's version counter."""
    from transformer_lens.components._bias import unless_zero

    model = build(**VARIANTS["gqa-rotary"])
    bias = model.unembed.b_U
    with torch.no_grad():
        assert unless_zero(bias) is None
        before = model(TOKENS)
        bias[3] = 5.0
        assert unless_zero(bias) is bias
        after = model(TOKENS)
    assert_close(after[..., 3] - before[..., 3], torch.full_like(before[..., 3], 5.0), 1e-5, "b_U")
    assert unless_zero(model.blocks[0].attn.b_Q) is model.blocks[0].attn.b_Q  # grad mode on
