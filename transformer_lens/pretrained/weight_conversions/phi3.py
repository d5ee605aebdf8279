"""Compatibility: classic's `weight_conversions.phi3` module."""

from typing import Any

from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.pretrained.weight_conversions import conversions


def convert_phi3_weights(phi: Any, cfg: HookedTransformerConfig) -> dict[str, Tensor]:
    """Keeps classic's convert_phi3_weights: the Phi-3 adapter converts the HF model."""
    return conversions.convert_phi3_weights(phi, cfg)
