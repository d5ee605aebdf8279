"""Classic `convert_<family>_weights(hf_model, cfg)` functions: thin wrappers over adapters."""

from transformer_lens.pretrained.weight_conversions.conversions import (
    convert_gemma_weights,
    convert_gpt2_weights,
    convert_llama_weights,
    convert_mistral_weights,
    convert_neox_weights,
    convert_olmo2_weights,
    convert_phi3_weights,
    convert_qwen2_weights,
    convert_qwen3_weights,
)

__all__ = [
    "convert_gemma_weights",
    "convert_gpt2_weights",
    "convert_llama_weights",
    "convert_mistral_weights",
    "convert_neox_weights",
    "convert_olmo2_weights",
    "convert_phi3_weights",
    "convert_qwen2_weights",
    "convert_qwen3_weights",
]
