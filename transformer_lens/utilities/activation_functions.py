"""Classic's activation-function path: the functions of `transformer_lens.activation_functions`
under classic's parameter name `input`, the trainable `XIELU`, and the name -> function table
`SUPPORTED_ACTIVATIONS` that a config's act_fn selects from."""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from transformer_lens import activation_functions as _act

ActivationFunction = Callable[..., Tensor]
"""Any activation: a function or a module called on a tensor, returning a tensor."""


def gelu_new(input: Float[Tensor, "..."]) -> Float[Tensor, "..."]:
    """GPT-2's tanh approximation of GELU (`transformer_lens.activation_functions.gelu_new`)."""
    return _act.gelu_new(input)


def gelu_fast(input: Float[Tensor, "..."]) -> Float[Tensor, "..."]:
    """The factored tanh GELU approximation (`transformer_lens.activation_functions.gelu_fast`)."""
    return _act.gelu_fast(input)


def gelu_pytorch_tanh(input: Float[Tensor, "..."]) -> Float[Tensor, "..."]:
    """PyTorch's tanh-approximated GELU (`transformer_lens.activation_functions.gelu_pytorch_tanh`)."""
    return _act.gelu_pytorch_tanh(input)


def solu(input: Float[Tensor, "... d_mlp"]) -> Float[Tensor, "... d_mlp"]:
    """x * softmax(x) over the last axis (`transformer_lens.activation_functions.solu`)."""
    return _act.solu(input)


def xielu(input: Float[Tensor, "..."]) -> Float[Tensor, "..."]:
    """xIELU with its initial coefficients (`transformer_lens.activation_functions.xielu`)."""
    return _act.xielu(input)


def _inverse_softplus(value: float) -> Tensor:
    return torch.tensor(value, dtype=torch.float32).expm1().log()


class XIELU(nn.Module):
    """xIELU (https://arxiv.org/abs/2411.13010) with trainable coefficients.

    f(x) = alpha_p x^2 + beta x                          for x > 0
    f(x) = alpha_n (expm1(min(x, eps)) - x) + beta x     for x <= 0

    with alpha_p = softplus(self.alpha_p) and alpha_n = beta + softplus(self.alpha_n). The
    parameters are stored behind the softplus, and beta and eps as buffers, as in Hugging
    Face's XIELUActivation, so checkpoint values load unchanged. Freshly constructed it
    equals `xielu`.
    """

    beta: Tensor
    eps: Tensor

    def __init__(
        self,
        alpha_p_init: float = 0.8,
        alpha_n_init: float = 0.8,
        beta_init: float = 0.5,
        eps: float = -1e-6,
    ):
        super().__init__()
        if alpha_p_init <= 0 or alpha_n_init <= beta_init:
            raise ValueError(
                "XIELU needs alpha_p_init > 0 and alpha_n_init > beta_init (both pass through "
                f"a softplus); got alpha_p_init={alpha_p_init}, alpha_n_init={alpha_n_init}, "
                f"beta_init={beta_init}"
            )
        self.alpha_p = nn.Parameter(_inverse_softplus(alpha_p_init))
        self.alpha_n = nn.Parameter(_inverse_softplus(alpha_n_init - beta_init))
        self.register_buffer("beta", torch.tensor(beta_init, dtype=torch.float32))
        self.register_buffer("eps", torch.tensor(eps, dtype=torch.float32))

    def forward(self, input: Float[Tensor, "..."]) -> Float[Tensor, "..."]:
        """xIELU of every element of `input`."""
        alpha_p = F.softplus(self.alpha_p)
        alpha_n = self.beta + F.softplus(self.alpha_n)
        positive = alpha_p * input * input + self.beta * input
        clamped = torch.minimum(input, self.eps.to(input.dtype))
        negative = alpha_n * (torch.expm1(clamped) - input) + self.beta * input
        return torch.where(input > 0, positive, negative)


SUPPORTED_ACTIVATIONS: dict[str, ActivationFunction] = {
    "solu": solu,
    "solu_ln": solu,  # the LayerNorm after SoLU belongs to the MLP, not to the activation
    "gelu_new": gelu_new,
    "gelu_fast": gelu_fast,
    "silu": F.silu,
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_pytorch_tanh": gelu_pytorch_tanh,
    "xielu": xielu,
}
"""act_fn name -> activation. A config's act_fn must be one of these names."""
