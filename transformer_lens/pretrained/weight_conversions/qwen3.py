"""Compatibility: classic's `weight_conversions.qwen3` module."""

from typing import Any

from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.pretrained.weight_conversions import conversions


def convert_qwen3_weights(qwen: Any, cfg: HookedTransformerConfig) -> dict[str, Tensor]:
    """Keeps classic's convert_qwen3_weights: the Qwen3 adapter converts the HF model."""
    return conversions.convert_qwen3_weights(qwen, cfg)
