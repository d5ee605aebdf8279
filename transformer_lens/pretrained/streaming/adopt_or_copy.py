"""Put streamed tensors into a model's parameters: adopt a tensor that belongs to nobody
else and already has the parameter's dtype, device and layout (no copy), else copy it."""

from __future__ import annotations

import torch
from torch import Tensor


def adopt_or_copy(
    targets: dict[str, torch.nn.Parameter],
    tensors: dict[str, Tensor],
    adoptable: set[str] | frozenset[str] = frozenset(),
) -> None:
    """Put each tensor into its parameter. A tensor whose key is in `adoptable` (it belongs
    to nobody else) and that is already in the parameter's dtype and layout becomes its
    storage instead of being copied; otherwise, or when two keys hold one tensor, it is
    copied."""
    unexpected = sorted(set(tensors) - set(targets))
    if unexpected:
        raise ValueError(f"Checkpoint produced keys the model does not have: {unexpected}")
    adopted: set[int] = set()
    with torch.no_grad():
        for key, value in tensors.items():
            target = targets[key]
            if target.shape != value.shape:
                raise ValueError(f"{key}: got {tuple(value.shape)}, expected {tuple(target.shape)}")
            storage = value.untyped_storage()
            if (
                key in adoptable
                and storage.data_ptr() not in adopted
                and storage.nbytes() == value.nbytes  # nothing else in that memory
                and value.dtype == target.dtype
                and value.device == target.device
                and value.stride() == target.stride()
                and value.storage_offset() == target.storage_offset()
            ):
                adopted.add(storage.data_ptr())
                target.data = value
            else:
                target.copy_(value)  # keeps the parameter's layout and dtype
