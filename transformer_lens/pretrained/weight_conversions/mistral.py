"""Compatibility: classic's `weight_conversions.mistral` module."""

from typing import Any

from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.pretrained.weight_conversions import conversions


def convert_mistral_weights(mistral: Any, cfg: HookedTransformerConfig) -> dict[str, Tensor]:
    """Keeps classic's convert_mistral_weights: the Mistral adapter converts the HF model."""
    return conversions.convert_mistral_weights(mistral, cfg)
