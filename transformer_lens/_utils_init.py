"""Weight initialisers of `transformer_lens.utils`, for TransformerLens's weight layouts.

torch's `nn.init` reads fans from its own layouts ([d_out, d_in] for a linear layer).
TransformerLens stores weights the other way round: [d_in, d_out] for a matrix and
[head_index, d_model, d_head] for an attention head's input weight, so the fans are
computed here and only the sampling is left to torch.
"""

import math
from typing import Literal

from torch import Tensor, nn

Nonlinearity = Literal[
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "selu",
]
"""The names torch's `nn.init.calculate_gain` knows."""


def calc_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight in TransformerLens layout.

    A vector of length n: (1, n). A matrix [d_in, d_out]: (d_in, d_out). Attention
    weights [head_index, d_model, d_head]: (d_model, head_index * d_head).
    """
    shape = tensor.shape
    if len(shape) == 1:
        return 1, shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 3:
        return shape[1], shape[0] * shape[2]
    raise ValueError(
        f"Fan in and fan out are defined for 1-, 2- and 3-D weights, got shape {tuple(shape)}"
    )


def init_xavier_uniform_(param: Tensor, gain: float = 1.0) -> Tensor:
    """Fill `param` in place from U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = calc_fan_in_and_fan_out(param)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return nn.init.uniform_(param, -bound, bound)


def init_xavier_normal_(param: Tensor, gain: float = 1.0) -> Tensor:
    """Fill `param` in place from N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = calc_fan_in_and_fan_out(param)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return nn.init.normal_(param, mean=0.0, std=std)


def init_kaiming_uniform_(
    param: Tensor,
    a: float = 0.0,
    nonlinearity: Nonlinearity = "relu",
    gain: float = 1.0,
    mode: str = "fan_in",
) -> Tensor:
    """Fill `param` in place from U(-b, b), b = gain * g * sqrt(3 / fan), where g is torch's
    `calculate_gain(nonlinearity, a)` and fan is fan_in or fan_out as `mode` says."""
    std = _kaiming_std(param, a, nonlinearity, gain, mode)
    bound = math.sqrt(3.0) * std
    return nn.init.uniform_(param, -bound, bound)


def init_kaiming_normal_(
    param: Tensor,
    a: float = 0.0,
    nonlinearity: Nonlinearity = "relu",
    gain: float = 1.0,
    mode: str = "fan_in",
) -> Tensor:
    """Fill `param` in place from N(0, std^2), std = gain * g / sqrt(fan), where g is torch's
    `calculate_gain(nonlinearity, a)` and fan is fan_in or fan_out as `mode` says."""
    std = _kaiming_std(param, a, nonlinearity, gain, mode)
    return nn.init.normal_(param, mean=0.0, std=std)


def _kaiming_std(
    param: Tensor, a: float, nonlinearity: Nonlinearity, gain: float, mode: str
) -> float:
    fan_in, fan_out = calc_fan_in_and_fan_out(param)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = fan_in if mode == "fan_in" else fan_out
    return gain * nn.init.calculate_gain(nonlinearity, a) / math.sqrt(fan)
