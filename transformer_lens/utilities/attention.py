"""Per-head linear projections of attention inputs, [head_index, d_model, d_head] weights."""

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor


def simple_attn_linear(
    input: Float[Tensor, "batch pos d_model"],
    w: Float[Tensor, "head_index d_model d_head"],
    b: Float[Tensor, "head_index d_head"],
) -> Float[Tensor, "batch pos head_index d_head"]:
    """input @ w[h] + b[h] for every head h, as one matmul. The weights follow the input to
    its device, as in classic (models split across devices pass them in from elsewhere)."""
    w, b = w.to(input.device), b.to(input.device)
    n_heads, d_model, d_head = w.shape
    # [head_index * d_head, d_model], the layout F.linear wants.
    weight = w.permute(0, 2, 1).reshape(n_heads * d_head, d_model)
    out = F.linear(input, weight, b.reshape(n_heads * d_head))
    return out.view(*input.shape[:2], n_heads, d_head)


def complex_attn_linear(
    input: Float[Tensor, "batch pos head_index d_model"],
    w: Float[Tensor, "head_index d_model d_head"],
    b: Float[Tensor, "head_index d_head"],
) -> Float[Tensor, "batch pos head_index d_head"]:
    """input[:, :, h] @ w[h] + b[h] for every head h: a separate input per head (the
    split-qkv-input and attn-in hooks)."""
    return torch.einsum("bphm,hmd->bphd", input, w) + b
