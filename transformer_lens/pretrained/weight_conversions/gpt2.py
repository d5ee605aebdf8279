"""Compatibility: classic's `weight_conversions.gpt2` module."""

from typing import Any

from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.pretrained.weight_conversions import conversions


def convert_gpt2_weights(gpt2: Any, cfg: HookedTransformerConfig) -> dict[str, Tensor]:
    """Keeps classic's convert_gpt2_weights: the GPT-2 adapter converts the HF model."""
    return conversions.convert_gpt2_weights(gpt2, cfg)
