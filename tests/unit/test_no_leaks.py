"""No leak, nothing lost (issue 7; DESIGN.md: "Hooks never outlive the run that added them,
whatever raised").

Whatever raises -- a forward hook, the forward itself, the caller inside a hooks() block, a
backward hook, also within run_with_cache(incl_bwd=True) -- and whether it is an Exception or a
KeyboardInterrupt: afterwards no hook that the failed run added is attached to any HookPoint,
hooks the user added themselves are still there (permanent ones survive reset_hooks() unless
including_permanent=True), and the model gives exactly the logits it gave before.

A config object shared by two models is never changed through one of them.
"""

import copy
from collections.abc import Callable

import pytest
import torch

from tests.tiny_models import GPT2_LIKE, MODELS, TOKENS, attached_hooks
from transformer_lens import (
    HookedTransformer,
    HookedTransformerConfig,
    HookedTransformerKeyValueCache,
)

# The warning run_with_hooks gives for backward hooks is not what these tests are about.
pytestmark = pytest.mark.filterwarnings("ignore:run_with_hooks removes its hooks:UserWarning")


@pytest.fixture(params=list(MODELS))
def model(request) -> HookedTransformer:
    return HookedTransformer(HookedTransformerConfig(**MODELS[request.param], seed=0))


def logits(model: HookedTransformer) -> torch.Tensor:
    with torch.no_grad():
        return model(TOKENS)


def zero(tensor, hook):
    return torch.zeros_like(tensor)


def keep(tensor, hook):
    return None


# ----- where the error comes from ----------------------------------------------------------------
class Boom(RuntimeError):
    pass


def raising(error: type[BaseException]) -> Callable[..., None]:
    def raise_error(*args, **kwargs) -> None:
        raise error("raised on purpose")

    return raise_error


def break_layer_1(model: HookedTransformer, error: type[BaseException], monkeypatch) -> None:
    """The forward itself raises in layer 1, after the hooks of layer 0 have fired."""
    monkeypatch.setattr(model.blocks[1].attn, "forward", raising(error))


def in_forward_hook(model, error, monkeypatch):
    model.run_with_hooks(
        TOKENS,
        fwd_hooks=[("blocks.0.hook_resid_pre", zero), ("blocks.1.attn.hook_z", raising(error))],
    )


def in_forward_hook_with_backward_hooks(model, error, monkeypatch):
    model.run_with_hooks(
        TOKENS,
        fwd_hooks=[("blocks.1.hook_resid_mid", raising(error))],
        bwd_hooks=[("blocks.0.hook_resid_post", zero)],
    )


def in_forward_hook_around_run_with_cache(model, error, monkeypatch):
    with model.hooks(fwd_hooks=[("blocks.1.attn.hook_pattern", raising(error))]):
        model.run_with_cache(TOKENS)


def in_forward(model, error, monkeypatch):
    break_layer_1(model, error, monkeypatch)
    model.run_with_hooks(TOKENS, fwd_hooks=[("blocks.0.hook_resid_post", zero)])


def in_forward_during_run_with_cache_incl_bwd(model, error, monkeypatch):
    break_layer_1(model, error, monkeypatch)
    model.run_with_cache(TOKENS, return_type="loss", incl_bwd=True)


def in_caller_inside_hooks(model, error, monkeypatch):
    with model.hooks(
        fwd_hooks=[("blocks.0.hook_resid_post", zero)],
        bwd_hooks=[("blocks.1.hook_resid_pre", keep)],
    ):
        model(TOKENS)
        raise error("raised on purpose")


def in_backward_hook(model, error, monkeypatch):
    with model.hooks(
        fwd_hooks=[("blocks.0.hook_resid_post", keep)],
        bwd_hooks=[("blocks.0.hook_resid_mid", raising(error))],
    ):
        model(TOKENS, return_type="loss").backward()


def in_backward_hook_during_run_with_cache_incl_bwd(model, error, monkeypatch):
    with model.hooks(bwd_hooks=[("blocks.1.hook_resid_pre", raising(error))]):
        model.run_with_cache(TOKENS, return_type="loss", incl_bwd=True)


def in_backward_during_run_with_cache_incl_bwd(model, error, monkeypatch):
    """Raised by autograd itself (a tensor hook), not by one of our hook points."""

    def raise_on_backward(tensor, hook):
        tensor.register_hook(raising(error))

    with model.hooks(fwd_hooks=[("blocks.1.hook_mlp_out", raise_on_backward)]):
        model.run_with_cache(TOKENS, return_type="loss", incl_bwd=True)


SCENARIOS = [
    in_forward_hook,
    in_forward_hook_with_backward_hooks,
    in_forward_hook_around_run_with_cache,
    in_forward,
    in_forward_during_run_with_cache_incl_bwd,
    in_caller_inside_hooks,
    in_backward_hook,
    in_backward_hook_during_run_with_cache_incl_bwd,
    in_backward_during_run_with_cache_incl_bwd,
]


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
def test_no_hook_stays_attached_and_logits_are_unchanged(model, scenario, error, monkeypatch):
    before = logits(model)
    with pytest.raises(error):
        scenario(model, error, monkeypatch)
    monkeypatch.undo()
    assert attached_hooks(model) == 0
    assert not model.is_caching
    assert torch.equal(logits(model), before)


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
def test_hooks_the_user_added_survive_a_failed_run(model, scenario, error, monkeypatch):
    """Cleanup removes only what the failed run added; reset_hooks() then keeps permanent
    hooks unless including_permanent=True."""
    fired: list[str] = []
    model.add_perma_hook("blocks.0.hook_resid_post", lambda t, hook: fired.append("permanent"))
    model.add_hook("blocks.1.hook_resid_post", lambda t, hook: fired.append("added"))
    before = logits(model)
    with pytest.raises(error):
        scenario(model, error, monkeypatch)
    monkeypatch.undo()
    assert attached_hooks(model) == 2
    fired.clear()
    assert torch.equal(logits(model), before)
    assert fired == ["permanent", "added"]
    model.reset_hooks()
    assert attached_hooks(model) == 1
    fired.clear()
    logits(model)
    assert fired == ["permanent"]
    model.reset_hooks(including_permanent=True)
    assert attached_hooks(model) == 0


def test_hooks_of_an_outer_context_survive_a_failure_inside_an_inner_one(model):
    before = logits(model)
    with model.hooks(fwd_hooks=[("blocks.0.hook_resid_post", zero)]):
        outer = logits(model)
        with pytest.raises(KeyboardInterrupt):
            model.run_with_hooks(
                TOKENS, fwd_hooks=[("blocks.1.attn.hook_z", raising(KeyboardInterrupt))]
            )
        assert attached_hooks(model) == 1
        assert torch.equal(logits(model), outer)
    assert attached_hooks(model) == 0
    assert torch.equal(logits(model), before)


def test_kv_cache_is_unchanged_after_a_hook_raises_mid_forward(model):
    cache = HookedTransformerKeyValueCache.init_cache(model.cfg, model.cfg.device, TOKENS.shape[0])
    with pytest.raises(KeyboardInterrupt), torch.no_grad():
        model.run_with_hooks(
            TOKENS,
            past_kv_cache=cache,
            fwd_hooks=[("blocks.1.attn.hook_q", raising(KeyboardInterrupt))],
        )
    assert attached_hooks(model) == 0
    assert [entry.length for entry in cache.entries] == [0, 0]
    assert cache.length == 0


def test_failed_process_weights_leaves_the_model_unchanged():
    model = HookedTransformer(HookedTransformerConfig(**dict(GPT2_LIKE, act_fn="solu_ln"), seed=0))
    before = logits(model)
    try:
        model.process_weights_()
    except ValueError:
        assert model.cfg.normalization_type == "LN"
        assert torch.equal(logits(model), before)
    else:
        assert_log_probs_close(logits(model), before)


def assert_log_probs_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual.log_softmax(-1), expected.log_softmax(-1), atol=1e-5, rtol=0)


# ----- a config shared by two models --------------------------------------------------------
def use_attn_in(model: HookedTransformer) -> None:
    if model.cfg.is_grouped:
        model.set_ungroup_grouped_query_attention(True)
    model.set_use_attn_in(True)


OPERATIONS: dict[str, Callable[[HookedTransformer], object]] = {
    "set_use_attn_result": lambda m: m.set_use_attn_result(True),
    "set_use_split_qkv_input": lambda m: m.set_use_split_qkv_input(True),
    "set_use_hook_mlp_in": lambda m: m.set_use_hook_mlp_in(True),
    "set_use_attn_in": use_attn_in,
    "set_ungroup_grouped_query_attention": lambda m: m.set_ungroup_grouped_query_attention(True),
    "to_bfloat16": lambda m: m.to(torch.bfloat16),
    "to_float64": lambda m: m.to(dtype=torch.float64),
    "process_weights_": lambda m: m.process_weights_(),
}


@pytest.mark.filterwarnings("ignore:center_writing_weights skipped:UserWarning")
@pytest.mark.parametrize("operation", list(OPERATIONS))
@pytest.mark.parametrize("fields", list(MODELS.values()), ids=list(MODELS))
def test_shared_config_is_never_changed_through_one_model(fields, operation):
    cfg = HookedTransformerConfig(**fields, seed=0)
    snapshot = copy.deepcopy(cfg)
    changed, bystander = HookedTransformer(cfg), HookedTransformer(cfg)
    bystander_logits = logits(bystander)
    OPERATIONS[operation](changed)
    assert changed.cfg != snapshot, "the operation should change the model's own config"
    assert cfg == snapshot
    assert bystander.cfg == snapshot
    assert torch.equal(logits(bystander), bystander_logits)
