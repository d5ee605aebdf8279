"""Compatibility: classic's `weight_conversions.llama` module."""

from typing import Any

from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.pretrained.weight_conversions import conversions


def convert_llama_weights(llama: Any, cfg: HookedTransformerConfig) -> dict[str, Tensor]:
    """Keeps classic's convert_llama_weights: the Llama adapter converts the HF model."""
    return conversions.convert_llama_weights(llama, cfg)
