import re

import numpy as np
import pytest
import torch
from torch import nn

from transformer_lens._hook_registry import _pos_slice_to_index, unknown_hook_message
from transformer_lens.hook_points import HookedRootModule, HookPoint

BATCH, POS, D_MODEL, N_HEADS, D_HEAD = 3, 5, 8, 2, 4
Q_INPUT = "blocks.0.hook_q_input"
HOOK_Q = "blocks.0.attn.hook_q"
PATTERN = "blocks.0.attn.hook_pattern"
RESID_PRE = "blocks.0.hook_resid_pre"


class TinyAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = nn.Linear(D_MODEL, N_HEADS * D_HEAD)
        self.k_proj = nn.Linear(D_MODEL, N_HEADS * D_HEAD)
        self.v_proj = nn.Linear(D_MODEL, N_HEADS * D_HEAD)
        self.o_proj = nn.Linear(N_HEADS * D_HEAD, D_MODEL)
        self.hook_q = HookPoint()
        self.hook_pattern = HookPoint(pos_axis=2)

    def forward(self, resid: torch.Tensor, q_input: torch.Tensor) -> torch.Tensor:
        batch, pos, _ = resid.shape
        if q_input.stride(2) == 0:
            q = self.q_proj(resid).view(batch, pos, N_HEADS, D_HEAD)
        else:
            weight = self.q_proj.weight.view(N_HEADS, D_HEAD, D_MODEL)
            q = torch.einsum("bphd,hed->bphe", q_input, weight) + self.q_proj.bias.view(
                N_HEADS, D_HEAD
            )
        q = self.hook_q(q)
        k = self.k_proj(resid).view(batch, pos, N_HEADS, D_HEAD)
        v = self.v_proj(resid).view(batch, pos, N_HEADS, D_HEAD)
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / D_HEAD**0.5
        pattern = self.hook_pattern(scores.softmax(dim=-1))
        z = torch.einsum("bhqk,bkhe->bqhe", pattern, v).reshape(batch, pos, N_HEADS * D_HEAD)
        return self.o_proj(z)


class TinyBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hook_resid_pre = HookPoint()
        self.hook_q_input = HookPoint(copy_before_hooks=True)
        self.attn = TinyAttention()
        self.hook_resid_post = HookPoint()

    def forward(self, resid: torch.Tensor) -> torch.Tensor:
        resid = self.hook_resid_pre(resid)
        q_input = self.hook_q_input(resid.unsqueeze(2).expand(-1, -1, N_HEADS, -1))
        return self.hook_resid_post(resid + self.attn(resid, q_input))


class TinyModel(HookedRootModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList([TinyBlock() for _ in range(2)])
        self.hook_loss = HookPoint(pos_axis=None)
        self.setup()

    def forward(
        self, x: torch.Tensor, return_loss: bool = False, fail: bool = False
    ) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        if fail:
            raise RuntimeError("forward failed")
        return self.hook_loss(x.pow(2).mean()) if return_loss else x


class FlaggedModel(TinyModel):
    use_split_qkv_input = False

    def _hook_unavailable_reason(self, name: str) -> str | None:
        if name.endswith("hook_q_input") and not self.use_split_qkv_input:
            return f"{name} only fires when use_split_qkv_input is True"
        return None


@pytest.fixture
def model() -> TinyModel:
    return TinyModel()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(BATCH, POS, D_MODEL, generator=torch.Generator().manual_seed(1))


def attached_hook_count(model: HookedRootModule) -> int:
    return sum(len(hp._forward_hooks) + len(hp._backward_hooks) for hp in model.hook_points())


def zero_hook(tensor, hook):
    return torch.zeros_like(tensor)


def test_setup_names_hook_points_in_registration_order(model):
    assert list(model.hook_dict)[:4] == [RESID_PRE, Q_INPUT, HOOK_Q, PATTERN]
    assert all(model.hook_dict[name].name == name for name in model.hook_dict)
    assert list(model.hook_points()) == list(model.hook_dict.values())
    assert "" not in model.mod_dict and model.mod_dict["blocks.1.attn"] is model.blocks[1].attn


def test_forward_hook_replaces_activation_and_gets_its_hook_point(model, x):
    seen = []

    def double(tensor, hook):
        seen.append(hook)
        return tensor * 2

    out = model.run_with_hooks(x, fwd_hooks=[("blocks.1.hook_resid_post", double)])
    assert seen == [model.hook_dict["blocks.1.hook_resid_post"]]
    torch.testing.assert_close(out, model(x) * 2)


def test_prepended_hook_runs_first(model, x):
    order = []
    model.add_hook(RESID_PRE, lambda t, hook: order.append("first"))
    model.add_hook(RESID_PRE, lambda t, hook: order.append("prepended"), prepend=True)
    model.add_hook(RESID_PRE, lambda t, hook: order.append("last"))
    model(x)
    assert order == ["prepended", "first", "last"]


def test_hook_returning_wrong_shape_raises_naming_hook_function_and_shapes(model, x):
    def drop_head(tensor, hook):
        return tensor[:, :, :1]

    shapes = [re.escape(str(shape)) for shape in [(3, 5, 1, 4), (3, 5, 2, 4)]]
    message = f"'drop_head' on hook point '{HOOK_Q}'.*{shapes[0]}.*{shapes[1]}"
    with pytest.raises(ValueError, match=message):
        model.run_with_hooks(x, fwd_hooks=[(HOOK_Q, drop_head)])
    assert attached_hook_count(model) == 0


def test_hook_returning_wrong_dtype_raises_naming_both_dtypes(model, x):
    def to_double(tensor, hook):
        return tensor.double()

    with pytest.raises(ValueError, match=r"'to_double'.*float64.*float32"):
        model.run_with_hooks(x, fwd_hooks=[(HOOK_Q, to_double)])


def test_hook_returning_non_tensor_raises_type_error_naming_hook_point(model, x):
    def return_number(tensor, hook):
        return 3

    with pytest.raises(TypeError, match=re.escape(RESID_PRE)):
        model.run_with_hooks(x, fwd_hooks=[(RESID_PRE, return_number)])


def test_backward_hook_replaces_gradient(model, x):
    x = x.clone().requires_grad_(True)
    with model.hooks(bwd_hooks=[(RESID_PRE, zero_hook)]):
        model(x, return_loss=True).backward()
    assert x.grad is not None and torch.count_nonzero(x.grad) == 0
    x.grad = None
    model(x, return_loss=True).backward()
    assert torch.count_nonzero(x.grad) > 0


def test_backward_hooks_see_gradient_replaced_by_earlier_hooks(model, x):
    seen = []
    with model.hooks(
        bwd_hooks=[
            ("blocks.1.hook_resid_post", lambda grad, hook: grad * 2),
            ("blocks.1.hook_resid_post", lambda grad, hook: seen.append(grad.clone())),
        ]
    ):
        model(x, return_loss=True).backward()
    _, cache = model.run_with_cache(
        x, names_filter="blocks.1.hook_resid_post", incl_bwd=True, return_loss=True
    )
    torch.testing.assert_close(seen[0], cache["blocks.1.hook_resid_post_grad"] * 2)


def test_backward_hook_returning_wrong_shape_raises(model, x):
    def shrink(grad, hook):
        return grad[0]

    with pytest.raises(ValueError, match=r"'shrink'.*gradient has shape \(3, 5, 8\)"):
        with model.hooks(bwd_hooks=[(RESID_PRE, shrink)]):
            model(x.requires_grad_(True), return_loss=True).backward()


def test_backward_hook_fires_after_its_context_ends_with_the_autograd_gradient(model, x):
    # circuit-tracer's pattern: hooks added in model.hooks(), backward() after the context
    # closed. The hook belongs to that forward, so it must still see the true gradient.
    seen, kept = [], {}
    with model.hooks(
        fwd_hooks=[(RESID_PRE, lambda t, hook: kept.setdefault("resid", t))],
        bwd_hooks=[(RESID_PRE, lambda grad, hook: seen.append(grad.clone()))],
    ):
        loss = model(x.requires_grad_(True), return_loss=True)
    (expected,) = torch.autograd.grad(loss, kept["resid"], retain_graph=True)
    loss.backward()
    assert len(seen) == 1
    assert expected.abs().sum() > 0
    torch.testing.assert_close(seen[0], expected, rtol=0, atol=0)


def test_backward_hook_after_its_context_can_still_replace_the_gradient(model, x):
    with model.hooks(bwd_hooks=[(RESID_PRE, lambda grad, hook: torch.zeros_like(grad))]):
        loss = model(x.requires_grad_(True), return_loss=True)
    loss.backward()
    assert x.grad is not None and torch.count_nonzero(x.grad) == 0


def test_backward_hook_never_fires_for_a_forward_after_its_context(model, x):
    fired = []
    with model.hooks(bwd_hooks=[(RESID_PRE, lambda grad, hook: fired.append(1))]):
        pass
    model(x.requires_grad_(True), return_loss=True).backward()
    with model.hooks(bwd_hooks=[(RESID_PRE, lambda grad, hook: fired.append(2))]):
        first = model(x, return_loss=True)
    second = model(x, return_loss=True)
    second.backward()
    assert fired == []
    first.backward()
    assert fired == [2]


def test_run_with_hooks_backward_hooks_fire_on_a_later_backward(model, x):
    seen = []
    loss = model.run_with_hooks(
        x.requires_grad_(True),
        return_loss=True,
        bwd_hooks=[("blocks.1.hook_resid_post", lambda grad, hook: seen.append(grad.clone()))],
    )
    assert attached_hook_count(model) == 0
    loss.backward()
    assert len(seen) == 1 and seen[0].abs().sum() > 0


def test_hook_point_keeps_classic_handle_lists(model):
    hook_point = model.hook_dict[RESID_PRE]
    model.add_hook(RESID_PRE, zero_hook)
    model.add_perma_hook(RESID_PRE, zero_hook, dir="bwd")
    hook_point.add_perma_hook(zero_hook)
    assert [h.is_permanent for h in hook_point.fwd_hooks] == [False, True]
    assert [h.is_permanent for h in hook_point.bwd_hooks] == [True]
    model.reset_hooks()
    assert [h.is_permanent for h in hook_point.fwd_hooks] == [True]
    assert len(hook_point.bwd_hooks) == 1
    model.reset_hooks(including_permanent=True)
    assert hook_point.fwd_hooks == [] and hook_point.bwd_hooks == []
    assert attached_hook_count(model) == 0


def test_check_hooks_to_add_sees_every_hook_and_can_refuse_it(x):
    class Refusing(TinyModel):
        def check_hooks_to_add(self, hook_point, hook_point_name, hook, dir="fwd", **kwargs):
            seen.append((hook_point_name, dir, hook_point is self.hook_dict[hook_point_name]))
            if hook_point_name.endswith("hook_q"):
                raise RuntimeError("no hooks on q")

    seen: list = []
    model = Refusing()
    model.add_hook(lambda name: name.endswith("resid_post"), zero_hook, dir="bwd")
    assert seen == [
        ("blocks.0.hook_resid_post", "bwd", True),
        ("blocks.1.hook_resid_post", "bwd", True),
    ]
    with pytest.raises(RuntimeError, match="no hooks on q"):
        model.run_with_hooks(x, fwd_hooks=[(HOOK_Q, zero_hook)])
    model.reset_hooks()
    assert attached_hook_count(model) == 0


def test_cache_all_and_cache_some_fill_the_given_dict(model, x):
    cache: dict = {}
    model.cache_all(cache)
    model(x, return_loss=True)
    assert set(cache) == set(model.hook_dict)
    model.reset_hooks()
    some: dict = {}
    model.cache_some(some, lambda name: name.endswith("hook_q"), remove_batch_dim=True)
    model(x[:1])
    model.reset_hooks()
    assert set(some) == {"blocks.0.attn.hook_q", "blocks.1.attn.hook_q"}
    assert some["blocks.0.attn.hook_q"].shape == (POS, N_HEADS, D_HEAD)


def raise_in_hook(model, x):
    def boom(tensor, hook):
        raise RuntimeError("hook failed")

    model.run_with_hooks(x, fwd_hooks=[(RESID_PRE, zero_hook), (HOOK_Q, boom)])


def raise_in_forward(model, x):
    model.run_with_hooks(x, fail=True, fwd_hooks=[(RESID_PRE, zero_hook)])


def raise_in_caller(model, x):
    with model.hooks(fwd_hooks=[(RESID_PRE, zero_hook)], bwd_hooks=[(HOOK_Q, zero_hook)]):
        raise RuntimeError("caller failed")


def interrupt_caller(model, x):
    with model.hooks(fwd_hooks=[(RESID_PRE, zero_hook)]):
        model(x)
        raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("raiser", "error"),
    [
        (raise_in_hook, RuntimeError),
        (raise_in_forward, RuntimeError),
        (raise_in_caller, RuntimeError),
        (interrupt_caller, KeyboardInterrupt),
    ],
)
def test_hooks_are_removed_whatever_raised(model, x, raiser, error):
    expected = model(x)
    with pytest.raises(error):
        raiser(model, x)
    assert attached_hook_count(model) == 0
    assert torch.equal(model(x), expected)


def test_failed_hook_addition_removes_the_hooks_already_added(model, x):
    expected = model(x)
    with pytest.raises(ValueError, match="hook_resid_prr"):
        with model.hooks(
            fwd_hooks=[(RESID_PRE, zero_hook), ("blocks.0.hook_resid_prr", zero_hook)],
            reset_hooks_end=False,
        ):
            pass
    assert attached_hook_count(model) == 0
    assert torch.equal(model(x), expected)


def test_nested_hook_contexts_remove_only_their_own(model, x):
    fired = []
    outer = ("blocks.0.hook_resid_post", lambda t, hook: fired.append("outer"))
    inner = ("blocks.1.hook_resid_post", lambda t, hook: fired.append("inner"))
    with model.hooks(fwd_hooks=[outer]):
        with model.hooks(fwd_hooks=[inner]):
            model(x)
        assert fired == ["outer", "inner"]
        model(x)
        assert fired == ["outer", "inner", "outer"]
    model(x)
    assert fired == ["outer", "inner", "outer"]


def test_permanent_hooks_survive_reset_unless_including_permanent(model, x):
    model.add_perma_hook("blocks.1.hook_resid_post", zero_hook)
    model.add_hook(RESID_PRE, lambda t, hook: t * 3)
    with model.hooks(fwd_hooks=[(RESID_PRE, lambda t, hook: t + 1)]):
        pass
    model.reset_hooks()
    assert torch.count_nonzero(model(x)) == 0
    model.reset_hooks(including_permanent=True)
    assert torch.count_nonzero(model(x)) > 0
    assert attached_hook_count(model) == 0


def test_hook_point_remove_hooks_selects_by_direction_and_level():
    hook_point = HookPoint()
    fired = []
    hook_point.add_hook(lambda t, hook: fired.append("fwd1"), level=1)
    hook_point.add_hook(lambda t, hook: fired.append("fwd2"), level=2)
    hook_point.add_hook(lambda g, hook: fired.append("bwd1"), dir="bwd", level=1)
    hook_point.remove_hooks("fwd", level=1)
    hook_point(torch.ones(2, requires_grad=True) * 1).sum().backward()
    assert fired == ["fwd2", "bwd1"]
    hook_point.remove_hooks("both")
    hook_point(torch.ones(2, requires_grad=True) * 1).sum().backward()
    assert fired == ["fwd2", "bwd1"]
    # ValueError from add_hook; TypeError when the runtime type checker sees the Literal first.
    with pytest.raises((ValueError, TypeError), match="sideways"):
        hook_point.add_hook(zero_hook, dir="sideways")  # type: ignore[arg-type]


def test_context_is_kept_until_cleared(model, x):
    def remember(tensor, hook):
        hook.ctx["calls"] = hook.ctx.get("calls", 0) + 1

    model.run_with_hooks(x, fwd_hooks=[(RESID_PRE, remember)])
    assert model.hook_dict[RESID_PRE].ctx == {"calls": 1}
    model.run_with_hooks(x, fwd_hooks=[(RESID_PRE, remember)], clear_contexts=True)
    assert model.hook_dict[RESID_PRE].ctx == {}
    model.run_with_hooks(x, fwd_hooks=[(RESID_PRE, remember)])
    model.reset_hooks()
    assert model.hook_dict[RESID_PRE].ctx == {}


def test_layer_reads_the_block_index(model):
    assert model.hook_dict["blocks.1.attn.hook_q"].layer() == 1
    with pytest.raises(ValueError, match="hook_loss"):
        model.hook_dict["hook_loss"].layer()
    with pytest.raises(ValueError):
        HookPoint().layer()


@pytest.mark.parametrize(
    "add",
    [
        lambda m, name: m.add_hook(name, zero_hook),
        lambda m, name: m.run_with_hooks(torch.zeros(1, 2, D_MODEL), fwd_hooks=[(name, zero_hook)]),
        lambda m, name: m.run_with_cache(torch.zeros(1, 2, D_MODEL), names_filter=[name]),
    ],
)
def test_unknown_hook_names_raise_with_suggestions(model, add):
    with pytest.raises(
        ValueError, match=r"'blocks\.0\.hook_resid_prr'.*'blocks\.0\.hook_resid_pre'"
    ):
        add(model, "blocks.0.hook_resid_prr")
    with pytest.raises(
        ValueError, match=r"'blocks\.0\.hook_resid_pre'.*'blocks\.1\.hook_resid_pre'"
    ):
        add(model, "hook_resid_pre")
    assert attached_hook_count(model) == 0


def test_unknown_hook_message_caps_suggestions_at_five():
    names = [f"blocks.{layer}.hook_resid_pre" for layer in range(12)]
    message = unknown_hook_message("hook_resid_pre", names)
    assert message.count("'blocks.") == 5
    assert "no similar names" in unknown_hook_message("zzz", names)


@pytest.mark.parametrize(
    "add",
    [
        lambda m: m.add_hook(Q_INPUT, zero_hook),
        lambda m: m.add_perma_hook(Q_INPUT, zero_hook),
        lambda m: m.run_with_hooks(torch.zeros(1, 2, D_MODEL), fwd_hooks=[(Q_INPUT, zero_hook)]),
        lambda m: m.run_with_cache(torch.zeros(1, 2, D_MODEL), names_filter=Q_INPUT),
        lambda m: m.run_with_cache(torch.zeros(1, 2, D_MODEL), names_filter=[RESID_PRE, Q_INPUT]),
    ],
)
def test_explicit_name_of_unavailable_hook_raises_its_reason(add):
    model = FlaggedModel()
    with pytest.raises(ValueError, match="only fires when use_split_qkv_input is True"):
        add(model)
    assert attached_hook_count(model) == 0


def test_filters_skip_unavailable_hooks_silently(x):
    model = FlaggedModel()
    model.add_hook(lambda name: name.endswith("input"), zero_hook)
    assert attached_hook_count(model) == 0
    _, cache = model.run_with_cache(x, names_filter=lambda name: "hook_q" in name)
    assert set(cache.keys()) == {"blocks.0.attn.hook_q", "blocks.1.attn.hook_q"}
    _, everything = model.run_with_cache(x, return_cache_object=False)
    assert Q_INPUT not in everything and RESID_PRE in everything
    model.use_split_qkv_input = True
    model.add_hook(Q_INPUT, zero_hook)
    assert attached_hook_count(model) == 1


@pytest.mark.parametrize("names_filter", [3, {RESID_PRE}, [RESID_PRE, 3]])
def test_names_filter_of_wrong_type_raises_type_error(model, x, names_filter):
    with pytest.raises(TypeError, match="int|set"):
        model.run_with_cache(x, names_filter=names_filter)


@pytest.mark.parametrize(
    ("names_filter", "expected"),
    [
        (None, None),
        (RESID_PRE, [RESID_PRE]),
        ([HOOK_Q, RESID_PRE], [HOOK_Q, RESID_PRE]),
        ((PATTERN,), [PATTERN]),
        (
            lambda name: name.endswith("resid_post"),
            ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"],
        ),
    ],
)
def test_run_with_cache_caches_what_the_filter_selects(model, x, names_filter, expected):
    activations = {}
    model.add_hook(lambda name: True, lambda t, hook: activations.update({hook.name: t.clone()}))
    out, cache = model.run_with_cache(x, names_filter=names_filter, return_cache_object=False)
    model.reset_hooks()
    expected = (
        [name for name in model.hook_dict if name != "hook_loss"] if expected is None else expected
    )
    assert sorted(cache) == sorted(expected)
    for name in expected:
        assert torch.equal(cache[name], activations[name])
        assert not cache[name].requires_grad
    assert torch.equal(out, model(x))
    assert attached_hook_count(model) == 0


def test_run_with_cache_returns_activation_cache(model, x):
    from transformer_lens.ActivationCache import ActivationCache

    _, cache = model.run_with_cache(x[:1], names_filter=[RESID_PRE, HOOK_Q], remove_batch_dim=True)
    assert isinstance(cache, ActivationCache)
    assert len(cache) == 2 and set(cache.keys()) == {RESID_PRE, HOOK_Q}
    assert cache[RESID_PRE].shape == (POS, D_MODEL)
    assert cache.has_batch_dim is False


def test_remove_batch_dim_and_device(model, x):
    _, full = model.run_with_cache(x[:1], names_filter=HOOK_Q, return_cache_object=False)
    _, cache = model.run_with_cache(
        x[:1], names_filter=HOOK_Q, remove_batch_dim=True, device="cpu", return_cache_object=False
    )
    assert cache[HOOK_Q].shape == (POS, N_HEADS, D_HEAD)
    assert cache[HOOK_Q].device == torch.device("cpu")
    assert torch.equal(cache[HOOK_Q], full[HOOK_Q][0])


@pytest.mark.parametrize(
    ("pos_slice", "positions"),
    [
        (2, [2]),
        (-1, [POS - 1]),
        (-2, [POS - 2]),
        ((1, 4), [1, 2, 3]),
        (slice(0, None, 2), [0, 2, 4]),
        ([0, 3], [0, 3]),
        (torch.tensor([4, 1]), [4, 1]),
    ],
)
def test_pos_slice_keeps_the_axis_and_slices_each_hooks_position_axis(
    model, x, pos_slice, positions
):
    _, full = model.run_with_cache(x, return_loss=True, return_cache_object=False)
    _, cache = model.run_with_cache(
        x, pos_slice=pos_slice, return_loss=True, return_cache_object=False
    )
    index = torch.tensor(positions)
    assert cache[HOOK_Q].shape == (BATCH, len(positions), N_HEADS, D_HEAD)
    assert torch.equal(cache[HOOK_Q], full[HOOK_Q][:, index])
    assert cache[PATTERN].shape == (BATCH, N_HEADS, len(positions), POS)
    assert torch.equal(cache[PATTERN], full[PATTERN][:, :, index])
    # The cached slice owns its memory instead of keeping the full activation alive.
    assert cache[PATTERN].untyped_storage().nbytes() == cache[PATTERN].numel() * 4
    assert torch.equal(cache["hook_loss"], full["hook_loss"])


def test_pos_slice_applies_before_remove_batch_dim(model, x):
    _, cache = model.run_with_cache(
        x[:1], pos_slice=3, remove_batch_dim=True, names_filter=PATTERN, return_cache_object=False
    )
    assert cache[PATTERN].shape == (N_HEADS, 1, POS)


@pytest.mark.parametrize(
    ("pos_slice", "expected"),
    [
        (None, None),
        (0, slice(0, 1)),
        (3, slice(3, 4)),
        (-1, slice(-1, None)),
        (-2, slice(-2, -1)),
        (np.int64(2), slice(2, 3)),
        ((1, 3), slice(1, 3)),
        ((0, None, 2), slice(0, None, 2)),
        (slice(2, None), slice(2, None)),
    ],
)
def test_pos_slice_to_index_normalises_to_a_slice(pos_slice, expected):
    assert _pos_slice_to_index(pos_slice) == expected


@pytest.mark.parametrize("positions", [[0, 2], np.array([0, 2]), torch.tensor([0, 2])])
def test_pos_slice_to_index_turns_positions_into_a_long_tensor(positions):
    index = _pos_slice_to_index(positions)
    assert isinstance(index, torch.Tensor) and index.dtype == torch.long
    assert index.tolist() == [0, 2]


def test_pos_slice_to_index_rejects_bad_input():
    with pytest.raises(ValueError, match="1-D"):
        _pos_slice_to_index(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="start, stop"):
        _pos_slice_to_index((1, 2, 3, 4))
    with pytest.raises(TypeError):
        _pos_slice_to_index(True)


def test_incl_bwd_caches_gradients_equal_to_autograd(model, x):
    names = [RESID_PRE, HOOK_Q, PATTERN, "blocks.1.hook_resid_post"]
    kept = {}

    def retain(tensor, hook):
        tensor.retain_grad()
        kept[hook.name] = tensor

    with model.hooks(fwd_hooks=[(name, retain) for name in names]):
        model(x.clone().requires_grad_(True), return_loss=True).backward()
    _, cache = model.run_with_cache(
        x.clone().requires_grad_(True),
        names_filter=names,
        incl_bwd=True,
        return_loss=True,
        return_cache_object=False,
    )
    assert sorted(cache) == sorted(names + [f"{name}_grad" for name in names])
    for name in names:
        torch.testing.assert_close(cache[f"{name}_grad"], kept[name].grad)
    assert attached_hook_count(model) == 0


def test_incl_bwd_needs_a_scalar_output(model, x):
    with pytest.raises(ValueError, match="scalar"):
        model.run_with_cache(x, incl_bwd=True)
    assert attached_hook_count(model) == 0


def test_add_caching_hooks_fill_a_given_dict_until_reset(model, x):
    given: dict[str, torch.Tensor] = {}
    cache = model.add_caching_hooks(names_filter=RESID_PRE, cache=given)
    assert cache is given and model.is_caching
    model(x)
    torch.testing.assert_close(cache[RESID_PRE], x)
    model.reset_hooks()
    model(x + 1)
    torch.testing.assert_close(cache[RESID_PRE], x)
    assert not model.is_caching


def test_copy_before_hooks_returns_input_itself_without_hooks():
    hook_point = HookPoint(copy_before_hooks=True)
    view = torch.zeros(2, 3).unsqueeze(1).expand(-1, 4, -1)
    assert hook_point(view) is view


@pytest.mark.parametrize("heads", [4, 1])
def test_copy_before_hooks_lets_hooks_edit_a_broadcast_view_in_place(heads):
    hook_point = HookPoint(copy_before_hooks=True)
    base = torch.zeros(2, 3)

    def edit_first_head(tensor, hook):
        tensor[:, 0] += 1.0

    hook_point.add_hook(edit_first_head)
    out = hook_point(base.unsqueeze(1).expand(-1, heads, -1))
    assert torch.equal(out[:, 0], torch.ones(2, 3))
    assert torch.count_nonzero(out[:, 1:]) == 0
    assert torch.count_nonzero(base) == 0


def test_in_place_edit_of_broadcast_view_fails_without_copy_before_hooks():
    hook_point = HookPoint()
    hook_point.add_hook(lambda tensor, hook: tensor.add_(1.0))
    with pytest.raises(RuntimeError):
        hook_point(torch.zeros(2, 3).unsqueeze(1).expand(-1, 4, -1))


def test_in_place_edit_of_split_input_is_seen_downstream(model, x):
    def scale_head_one_in_place(tensor, hook):
        tensor[:, :, 1] *= 3.0

    def scale_head_one(tensor, hook):
        scaled = tensor.clone()
        scaled[:, :, 1] *= 3.0
        return scaled

    def read_only(tensor, hook):
        return None

    unhooked, x_before = model(x), x.clone()
    torch.testing.assert_close(model.run_with_hooks(x, fwd_hooks=[(Q_INPUT, read_only)]), unhooked)
    in_place = model.run_with_hooks(x, fwd_hooks=[(Q_INPUT, scale_head_one_in_place)])
    # q_input broadcasts from the residual, which is x itself here: the edit must not leak.
    assert torch.equal(x, x_before)
    replaced = model.run_with_hooks(x, fwd_hooks=[(Q_INPUT, scale_head_one)])
    torch.testing.assert_close(in_place, replaced)
    assert not torch.allclose(in_place, unhooked)
