"""Hook behaviour on a whole grouped-query model: nothing leaks, bad hooks are refused."""

import pytest
import torch

from tests.tiny_models import GROUPED, attached_hooks, build
from transformer_lens import HookedTransformer


@pytest.fixture
def model() -> HookedTransformer:
    return build(GROUPED)


@pytest.fixture
def tokens() -> torch.Tensor:
    return torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(0))


def test_hooks_are_removed_after_an_exception_inside_a_hook(model, tokens):
    before = model(tokens)

    def broken(x, hook):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_z", broken)])
    assert attached_hooks(model) == 0
    assert torch.equal(model(tokens), before)


@pytest.mark.parametrize("error", [ValueError("caller"), KeyboardInterrupt()])
def test_hooks_are_removed_when_the_caller_raises_inside_hooks_context(model, tokens, error):
    before = model(tokens)
    zero = (lambda name: name.endswith("hook_resid_post"), lambda x, hook: torch.zeros_like(x))
    with pytest.raises(type(error)):
        with model.hooks(fwd_hooks=[zero]):
            assert not torch.equal(model(tokens), before)  # the hook is active inside
            raise error
    assert attached_hooks(model) == 0
    assert torch.equal(model(tokens), before)


def test_hooks_are_removed_when_the_forward_raises(model, tokens):
    hooks = [("blocks.0.hook_resid_pre", lambda x, hook: None)]
    with pytest.raises(ValueError, match="d_vocab"):
        model.run_with_hooks(tokens + 100, fwd_hooks=hooks)
    assert attached_hooks(model) == 0


def test_unknown_hook_name_suggests_the_closest_names(model, tokens):
    with pytest.raises(ValueError) as info:
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_patern", lambda x, hook: x)])
    assert "blocks.0.attn.hook_patern" in str(info.value)
    assert "blocks.0.attn.hook_pattern" in str(info.value)
    assert attached_hooks(model) == 0


@pytest.mark.parametrize(
    ("hook_name", "flag"),
    [
        ("blocks.0.hook_q_input", "use_split_qkv_input"),
        ("blocks.0.hook_k_input", "use_split_qkv_input"),
        ("blocks.0.attn.hook_result", "use_attn_result"),
        ("blocks.0.hook_mlp_in", "use_hook_mlp_in"),
        ("blocks.0.hook_attn_in", "use_attn_in"),
    ],
)
def test_hook_that_cannot_fire_under_the_flags_is_refused_naming_the_flag(
    model, tokens, hook_name, flag
):
    for add in (
        lambda: model.add_hook(hook_name, lambda x, hook: x),
        lambda: model.run_with_hooks(tokens, fwd_hooks=[(hook_name, lambda x, hook: x)]),
        lambda: model.run_with_cache(tokens, names_filter=hook_name),
    ):
        with pytest.raises(ValueError, match=flag):
            add()
    assert attached_hooks(model) == 0


def test_hook_returning_a_wrong_shape_is_refused_naming_the_hook(model, tokens):
    with pytest.raises(ValueError, match=r"blocks\.0\.attn\.hook_k") as info:
        model.run_with_hooks(
            tokens, fwd_hooks=[("blocks.0.attn.hook_k", lambda x, hook: x[:, :, :1])]
        )
    assert "(2, 7, 2, 8)" in str(info.value) and "(2, 7, 1, 8)" in str(info.value)
    assert attached_hooks(model) == 0


def test_run_with_cache_keeps_kv_heads_and_per_query_patterns(model, tokens):
    _, cache = model.run_with_cache(tokens)
    assert cache["k", 0].shape == (2, 7, 2, 8)
    assert cache["q", 0].shape == (2, 7, 4, 8)
    assert cache["pattern", 1].shape == (2, 4, 7, 7)
    assert attached_hooks(model) == 0


def test_split_input_hooks_can_be_edited_in_place_per_kv_head(model, tokens):
    model.set_use_split_qkv_input(True)
    _, clean = model.run_with_cache(tokens, names_filter="blocks.1.attn.hook_z")

    def zero_kv_head_1(x, hook):
        x[:, :, 1] = 0.0

    with model.hooks(fwd_hooks=[("blocks.1.hook_v_input", zero_kv_head_1)]):
        _, patched = model.run_with_cache(tokens, names_filter="blocks.1.attn.hook_z")
    z_clean, z_patched = clean["blocks.1.attn.hook_z"], patched["blocks.1.attn.hook_z"]
    # The edited input takes the per-head projection, which rounds differently (~1e-7).
    unchanged = (z_clean[:, :, :2] - z_patched[:, :, :2]).abs().max()  # group of kv head 0
    changed = (z_clean[:, :, 2:] - z_patched[:, :, 2:]).abs().amax(dim=(0, 1, 3))  # kv head 1
    assert unchanged < 1e-6
    assert bool((changed > 1e-2).all())
