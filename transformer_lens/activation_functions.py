"""Activation functions used by the MLPs; re-exported from `transformer_lens.utils`.

Each function is elementwise except `solu`, which normalises over the last axis.
"""

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def gelu_new(x: Float[Tensor, "..."]) -> Float[Tensor, "..."]:
    """GPT-2's tanh approximation of GELU: 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))."""
    return 0.5 * x * (1.0 + torch.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * torch.pow(x, 3.0))))


def gelu_fast(x: Float[Tensor, "..."]) -> Float[Tensor, "..."]:
    """The same tanh approximation as `gelu_new`, factored as x(1 + 0.044715x^2)."""
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def gelu_pytorch_tanh(x: Float[Tensor, "..."]) -> Float[Tensor, "..."]:
    """PyTorch's own tanh-approximated GELU (the Gemma-2 activation)."""
    return F.gelu(x, approximate="tanh")


def solu(x: Float[Tensor, "... d_mlp"]) -> Float[Tensor, "... d_mlp"]:
    """Softmax linear unit: x * softmax(x) over the last axis."""
    return x * x.softmax(dim=-1)


def xielu(
    x: Float[Tensor, "..."],
    alpha_p: float = 0.8,
    alpha_n: float = 0.8,
    beta: float = 0.5,
    eps: float = -1e-6,
) -> Float[Tensor, "..."]:
    """xIELU (Huang, 2025) with its default, untrained coefficients.

    f(x) = alpha_p x^2 + beta x                          for x > 0
    f(x) = alpha_n (expm1(min(x, eps)) - x) + beta x     for x <= 0

    The paper stores alpha_p and alpha_n - beta behind a softplus so that training keeps
    them positive; with the initial values the softplus returns them unchanged, so the
    effective coefficients are passed here directly.
    """
    positive = alpha_p * x * x + beta * x
    negative = alpha_n * (torch.expm1(torch.clamp(x, max=eps)) - x) + beta * x
    return torch.where(x > 0, positive, negative)
