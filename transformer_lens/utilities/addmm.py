"""Bias-plus-matmul helpers in Hugging Face Conv1D's form (GPT-2's linear layers)."""

import torch
from jaxtyping import Float
from torch import Tensor


def vanilla_addmm(
    input: Float[Tensor, "... #o"], mat1: Float[Tensor, "m n"], mat2: Float[Tensor, "n o"]
) -> Float[Tensor, "m o"]:
    """`torch.addmm(input, mat1, mat2)`: input + mat1 @ mat2 for 2-D mat1 and mat2, with
    input broadcastable to [m, o]."""
    return torch.addmm(input, mat1, mat2)


def batch_addmm(
    bias: Float[Tensor, "... #d_out"],
    weight: Float[Tensor, "d_in d_out"],
    x: Float[Tensor, "... d_in"],
) -> Float[Tensor, "... d_out"]:
    """x @ weight + bias over any leading axes of x, computed as Hugging Face's Conv1D does
    (one addmm on x flattened to 2-D), so results match it bit for bit."""
    rows = x.reshape(-1, x.shape[-1])
    return vanilla_addmm(bias, rows, weight).view(*x.shape[:-1], weight.shape[-1])
