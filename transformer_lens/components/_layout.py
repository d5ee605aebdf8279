"""Parameter layouts that let every projection run as one `F.linear` with no weight copy.

Classic TransformerLens exposes weights as `W_Q [head_index, d_model, d_head]`,
`W_in [d_model, d_mlp]` and so on. `F.linear` wants `[out_features, in_features]` in
memory. We allocate the memory in the `F.linear` layout and register the parameter as a
permuted view of it: the public shape is the classic one, and `linear_weight_*` below turn
it back into the `F.linear` matrix as a free view. A weight that arrives in another layout
(a user assigning a fresh tensor) still works: `reshape` then copies, correctness first.
"""

import torch
from jaxtyping import Float
from torch import Tensor, nn


def head_input_parameter(
    n_heads: int, d_model: int, d_head: int, dtype: torch.dtype
) -> nn.Parameter:
    """W_Q/W_K/W_V: public [n_heads, d_model, d_head], memory [n_heads, d_head, d_model]."""
    memory = torch.empty(n_heads, d_head, d_model, dtype=dtype)
    return nn.Parameter(memory.transpose(1, 2))


def head_output_parameter(
    n_heads: int, d_head: int, d_model: int, dtype: torch.dtype
) -> nn.Parameter:
    """W_O: public [n_heads, d_head, d_model], memory [d_model, n_heads, d_head]."""
    memory = torch.empty(d_model, n_heads, d_head, dtype=dtype)
    return nn.Parameter(memory.permute(1, 2, 0))


def matrix_parameter(d_in: int, d_out: int, dtype: torch.dtype) -> nn.Parameter:
    """W_in/W_out/W_U: public [d_in, d_out], memory [d_out, d_in]."""
    return nn.Parameter(torch.empty(d_out, d_in, dtype=dtype).T)


def linear_weight_from_heads(
    weight: Float[Tensor, "head_index d_model d_head"],
) -> Float[Tensor, "head_index_x_d_head d_model"]:
    heads, d_model, d_head = weight.shape
    return weight.transpose(1, 2).reshape(heads * d_head, d_model)


def linear_weight_to_model(
    weight: Float[Tensor, "head_index d_head d_model"],
) -> Float[Tensor, "d_model head_index_x_d_head"]:
    heads, d_head, d_model = weight.shape
    return weight.permute(2, 0, 1).reshape(d_model, heads * d_head)
