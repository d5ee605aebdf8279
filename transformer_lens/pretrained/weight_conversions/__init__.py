"""Classic `convert_<family>_weights(hf_model, cfg)` functions: thin wrappers over adapters,
one module per family as in classic."""

from transformer_lens.pretrained.weight_conversions.gemma import convert_gemma_weights
from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights
from transformer_lens.pretrained.weight_conversions.llama import convert_llama_weights
from transformer_lens.pretrained.weight_conversions.mistral import convert_mistral_weights
from transformer_lens.pretrained.weight_conversions.neox import convert_neox_weights
from transformer_lens.pretrained.weight_conversions.olmo2 import convert_olmo2_weights
from transformer_lens.pretrained.weight_conversions.phi3 import convert_phi3_weights
from transformer_lens.pretrained.weight_conversions.qwen2 import convert_qwen2_weights
from transformer_lens.pretrained.weight_conversions.qwen3 import convert_qwen3_weights

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
