"""Classic `convert_<family>_weights(hf_model, cfg)` functions: thin wrappers over adapters."""

from transformer_lens.pretrained.weight_conversions.conversions import convert_gemma_weights

__all__ = ["convert_gemma_weights"]
