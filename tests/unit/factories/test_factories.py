"""transformer_lens.factories: the activation and the MLP class a config selects."""

import pytest
import torch.nn.functional as F

from transformer_lens import HookedTransformerConfig
from transformer_lens.components.mlps.gated_mlp import GatedMLP
from transformer_lens.components.mlps.mlp import MLP
from transformer_lens.factories.activation_function_factory import ActivationFunctionFactory
from transformer_lens.factories.mlp_factory import MLPFactory
from transformer_lens.utilities.activation_functions import XIELU, gelu_new


def config(**overrides) -> HookedTransformerConfig:
    fields = dict(n_layers=1, d_model=8, n_ctx=4, d_head=4, n_heads=2, d_mlp=16, act_fn="relu")
    return HookedTransformerConfig(**(fields | overrides))


@pytest.mark.parametrize(("name", "expected"), [("relu", F.relu), ("gelu_new", gelu_new)])
def test_pick_activation_function_by_name(name, expected):
    assert ActivationFunctionFactory.pick_activation_function(config(act_fn=name)) is expected


def test_pick_activation_function_gives_a_fresh_trainable_xielu():
    cfg = config(act_fn="xielu")
    first = ActivationFunctionFactory.pick_activation_function(cfg)
    second = ActivationFunctionFactory.pick_activation_function(cfg)
    assert isinstance(first, XIELU) and isinstance(second, XIELU) and first is not second


def test_pick_activation_function_without_act_fn_raises():
    cfg = config()
    cfg.act_fn = None
    with pytest.raises(ValueError, match="act_fn is None"):
        ActivationFunctionFactory.pick_activation_function(cfg)


def test_create_mlp_plain_and_gated():
    plain = MLPFactory.create_mlp(config())
    gated = MLPFactory.create_mlp(config(gated_mlp=True))
    assert type(plain) is MLP
    assert type(gated) is GatedMLP
    assert gated.W_gate.shape == (8, 16)


def test_create_mlp_accepts_a_dict_config():
    cfg = dict(n_layers=1, d_model=8, n_ctx=4, d_head=4, n_heads=2, d_mlp=16, act_fn="relu")
    assert type(MLPFactory.create_mlp(cfg)) is MLP


def test_create_mlp_for_experts_reaches_moe():
    # MoE routing is not implemented in this fork; reaching MoE's constructor is the point.
    with pytest.raises(NotImplementedError):
        MLPFactory.create_mlp(config(num_experts=4, experts_per_token=2, gated_mlp=True))


def test_create_mlp_4bit_reaches_gated_mlp_4bit():
    with pytest.raises((ImportError, NotImplementedError), match="4-bit"):
        MLPFactory.create_mlp(config(gated_mlp=True, load_in_4bit=True))
