"""Compatibility: classic's `weight_conversions.qwen2` module."""

from typing import Any

from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.pretrained.weight_conversions import conversions


def convert_qwen2_weights(qwen: Any, cfg: HookedTransformerConfig) -> dict[str, Tensor]:
    """Keeps classic's convert_qwen2_weights: the Qwen2 adapter converts the HF model."""
    return conversions.convert_qwen2_weights(qwen, cfg)
