"""Compatibility: classic's `weight_conversions.neox` module."""

from typing import Any

from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.pretrained.weight_conversions import conversions


def convert_neox_weights(neox: Any, cfg: HookedTransformerConfig) -> dict[str, Tensor]:
    """Keeps classic's convert_neox_weights: the GPT-NeoX adapter converts the HF model."""
    return conversions.convert_neox_weights(neox, cfg)
