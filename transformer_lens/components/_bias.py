"""Skip biases that are all zero (most modern families have none, and we store zeros).

F.linear with a bias is an addmm that first writes the broadcast bias into the output: on
Gemma's 256k-wide unembedding that pass alone costs ~10% of a forward. A bias is skipped
only when no gradient can flow to it (grad mode off, or it does not require grad), and the
zero check is cached against the tensor's version counter, so an in-place edit (loading,
processing, a user's assignment) is seen at once.
"""

import torch
from torch import Tensor

_STAMP = "_transformer_lens_zero_stamp"  # (version, data_ptr, is_zero) kept on the tensor


def unless_zero(bias: Tensor) -> Tensor | None:
    """`bias`, or None when it is all zero and no gradient is wanted for it."""
    if bias.requires_grad and torch.is_grad_enabled():
        return bias
    if torch.is_inference(bias):
        return bias
    stamp = (bias._version, bias.data_ptr())
    cached = getattr(bias, _STAMP, None)
    if cached is None or cached[:2] != stamp:
        cached = (*stamp, not bool(bias.any()))
        setattr(bias, _STAMP, cached)
    return None if cached[2] else bias
