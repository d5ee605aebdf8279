"""Classic `convert_<family>_weights(hf_model, cfg)`: each applies its family's adapter."""

from collections.abc import Callable
from typing import Any

from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.pretrained.convert import convert_state_dict
from transformer_lens.pretrained.registry import ADAPTERS
from transformer_lens.pretrained.streaming import sources

Converter = Callable[[Any, HookedTransformerConfig], dict[str, Tensor]]


def _converter(family: str, architectures: tuple[str, ...]) -> Converter:
    def convert(hf_model: Any, cfg: HookedTransformerConfig) -> dict[str, Tensor]:
        architecture = type(hf_model).__name__
        if architecture not in architectures:
            raise ValueError(
                f"convert_{family}_weights expects {architectures}, got {architecture}"
            )
        if architecture not in ADAPTERS:
            raise ValueError(
                f"Unsupported architecture {architecture}; supported: {sorted(ADAPTERS)}"
            )
        source = sources.from_hf_model(hf_model)
        return convert_state_dict(ADAPTERS[architecture], cfg, source.get, source.keys())

    convert.__name__ = f"convert_{family}_weights"
    convert.__doc__ = f"{family} HF weights -> HookedTransformer state dict (unprocessed)."
    return convert


convert_gemma_weights = _converter(
    "gemma", ("GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM")
)
convert_gpt2_weights = _converter("gpt2", ("GPT2LMHeadModel",))
convert_neox_weights = _converter("neox", ("GPTNeoXForCausalLM",))
convert_llama_weights = _converter("llama", ("LlamaForCausalLM",))
convert_mistral_weights = _converter("mistral", ("MistralForCausalLM",))
convert_qwen2_weights = _converter("qwen2", ("Qwen2ForCausalLM",))
convert_qwen3_weights = _converter("qwen3", ("Qwen3ForCausalLM",))
convert_phi3_weights = _converter("phi3", ("Phi3ForCausalLM",))
convert_olmo2_weights = _converter("olmo2", ("Olmo2ForCausalLM",))
