"""One-line conversions kept for classic imports; each applies its family's adapter."""

from typing import Any

from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.pretrained import sources
from transformer_lens.pretrained.adapter import Adapter
from transformer_lens.pretrained.convert import convert_state_dict
from transformer_lens.pretrained.families.gemma import GEMMA


def _convert(adapter: Adapter, hf_model: Any, cfg: HookedTransformerConfig) -> dict[str, Tensor]:
    source = sources.from_hf_model(hf_model)
    return convert_state_dict(adapter, cfg, source.get, source.keys())


def convert_gemma_weights(hf_model: Any, cfg: HookedTransformerConfig) -> dict[str, Tensor]:
    """Gemma HF weights -> HookedTransformer state dict (unprocessed)."""
    return _convert(GEMMA, hf_model, cfg)
