"""Compatibility: classic's `weight_conversions.olmo2` module."""

from typing import Any

from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.pretrained.weight_conversions import conversions


def convert_olmo2_weights(olmo2: Any, cfg: HookedTransformerConfig) -> dict[str, Tensor]:
    """Keeps classic's convert_olmo2_weights: the OLMo-2 adapter converts the HF model."""
    return conversions.convert_olmo2_weights(olmo2, cfg)
