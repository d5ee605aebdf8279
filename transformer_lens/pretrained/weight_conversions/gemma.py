"""Compatibility: classic's `weight_conversions.gemma` module."""

from typing import Any

from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.pretrained.weight_conversions import conversions


def convert_gemma_weights(gemma: Any, cfg: HookedTransformerConfig) -> dict[str, Tensor]:
    """Keeps classic's convert_gemma_weights: the Gemma (1, 2 and 3) adapter converts the HF model."""
    return conversions.convert_gemma_weights(gemma, cfg)
