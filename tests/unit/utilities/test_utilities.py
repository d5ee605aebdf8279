"""transformer_lens.utilities: activations under classic's names, XIELU, addmm and the
per-head attention projections, checked against formulas and torch reference ops."""

import math

import pytest
import torch
import torch.nn.functional as F

from transformer_lens import activation_functions
from transformer_lens.utilities import activation_functions as act
from transformer_lens.utilities.addmm import batch_addmm, vanilla_addmm
from transformer_lens.utilities.attention import complex_attn_linear, simple_attn_linear


@pytest.fixture
def x() -> torch.Tensor:
    return torch.linspace(-4, 4, 2 * 3 * 8).reshape(2, 3, 8)


def test_gelu_new_and_fast_match_torch_tanh_gelu(x):
    reference = F.gelu(x, approximate="tanh")
    torch.testing.assert_close(act.gelu_new(x), reference)
    torch.testing.assert_close(act.gelu_fast(x), reference, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(act.gelu_pytorch_tanh(x), reference)


def test_solu_is_x_times_softmax_of_last_axis(x):
    torch.testing.assert_close(act.solu(x), x * torch.softmax(x, dim=-1))


def test_xielu_matches_its_piecewise_formula():
    x = torch.tensor([-2.0, -1e-3, 0.0, 0.5, 3.0])
    expected = [
        0.8 * (math.expm1(-2.0) + 2.0) - 1.0,
        0.8 * (math.expm1(-1e-3) + 1e-3) - 0.5e-3,
        0.8 * (math.expm1(-1e-6) - 0.0),
        0.8 * 0.25 + 0.25,
        0.8 * 9.0 + 1.5,
    ]
    torch.testing.assert_close(act.xielu(x), torch.tensor(expected))


def test_functions_take_classic_parameter_name(x):
    assert torch.equal(act.gelu_new(input=x), activation_functions.gelu_new(x))


def test_xielu_module_at_init_equals_fixed_function(x):
    torch.testing.assert_close(act.XIELU()(x), act.xielu(x))


def test_xielu_module_stores_coefficients_behind_softplus():
    module = act.XIELU(alpha_p_init=1.5, alpha_n_init=2.0, beta_init=0.25, eps=-1e-4)
    assert set(dict(module.named_parameters())) == {"alpha_p", "alpha_n"}
    assert set(dict(module.named_buffers())) == {"beta", "eps"}
    torch.testing.assert_close(F.softplus(module.alpha_p), torch.tensor(1.5))
    torch.testing.assert_close(F.softplus(module.alpha_n), torch.tensor(2.0 - 0.25))
    x = torch.tensor([-1.0, 2.0])
    expected = torch.tensor([2.0 * (math.expm1(-1.0) + 1.0) - 0.25, 1.5 * 4.0 + 0.5])
    torch.testing.assert_close(module(x), expected)


def test_xielu_module_is_trainable():
    module = act.XIELU()
    with torch.enable_grad():
        module(torch.tensor([-1.0, 2.0])).sum().backward()
    assert module.alpha_p.grad is not None and module.alpha_p.grad != 0
    assert module.alpha_n.grad is not None and module.alpha_n.grad != 0


def test_xielu_module_rejects_coefficients_the_softplus_cannot_hold():
    with pytest.raises(ValueError, match="alpha_n_init > beta_init"):
        act.XIELU(alpha_n_init=0.5, beta_init=0.5)


def test_supported_activations_cover_config_names():
    from transformer_lens.HookedTransformerConfig import SUPPORTED_ACTIVATIONS as config_names

    assert set(act.SUPPORTED_ACTIVATIONS) == set(config_names)
    assert act.SUPPORTED_ACTIVATIONS["relu"] is F.relu
    assert act.SUPPORTED_ACTIVATIONS["solu_ln"] is act.solu


def test_vanilla_addmm_is_bias_plus_product():
    torch.manual_seed(0)
    bias, mat1, mat2 = torch.randn(5), torch.randn(3, 4), torch.randn(4, 5)
    torch.testing.assert_close(vanilla_addmm(bias, mat1, mat2), mat1 @ mat2 + bias)


def test_batch_addmm_is_x_at_w_plus_b_over_leading_axes():
    torch.manual_seed(0)
    x, weight, bias = torch.randn(2, 3, 4), torch.randn(4, 6), torch.randn(6)
    out = batch_addmm(bias, weight, x)
    assert out.shape == (2, 3, 6)
    torch.testing.assert_close(out, x @ weight + bias)


def test_simple_attn_linear_matches_einsum():
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 5, 8), torch.randn(3, 8, 4), torch.randn(3, 4)
    expected = torch.einsum("bpm,hmd->bphd", x, w) + b
    out = simple_attn_linear(x, w, b)
    assert out.shape == (2, 5, 3, 4)
    torch.testing.assert_close(out, expected)


def test_complex_attn_linear_uses_each_heads_own_input():
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 5, 3, 8), torch.randn(3, 8, 4), torch.randn(3, 4)
    out = complex_attn_linear(x, w, b)
    for head in range(3):
        torch.testing.assert_close(out[:, :, head], x[:, :, head] @ w[head] + b[head])


def test_complex_equals_simple_when_every_head_reads_the_same_input():
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 5, 8), torch.randn(3, 8, 4), torch.randn(3, 4)
    repeated = x[:, :, None].expand(-1, -1, 3, -1)
    torch.testing.assert_close(complex_attn_linear(repeated, w, b), simple_attn_linear(x, w, b))
