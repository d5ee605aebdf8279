"""HF architecture name -> family adapter. A dict lookup, no branching on names."""

from typing import Any

from transformer_lens.pretrained.adapter import Adapter
from transformer_lens.pretrained.families.gemma import GEMMA

ADAPTERS: dict[str, Adapter] = {
    architecture: adapter for adapter in (GEMMA,) for architecture in adapter.architectures
}


def adapter_for(hf_config: Any) -> Adapter:
    architectures = list(getattr(hf_config, "architectures", None) or [])
    for architecture in architectures:
        if architecture in ADAPTERS:
            return ADAPTERS[architecture]
    raise ValueError(
        f"Unsupported architecture {architectures or type(hf_config).__name__}; "
        f"supported: {sorted(ADAPTERS)}"
    )
