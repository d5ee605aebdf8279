"""GatedMLP4Bit: classic's gated MLP over bitsandbytes 4-bit weights (load_in_4bit).

Kept importable without bitsandbytes; 4-bit weights are not supported yet, so constructing
one raises: ImportError without bitsandbytes, NotImplementedError with it.
"""

import importlib.util

from transformer_lens.components.mlps.can_be_used_as_mlp import CanBeUsedAsMLP
from transformer_lens.HookedTransformerConfig import ConfigOrDict


class GatedMLP4Bit(CanBeUsedAsMLP):
    """The gated MLP with 4-bit quantized W_gate, W_in and W_out: not supported yet."""

    def __init__(self, cfg: ConfigOrDict):
        super().__init__(cfg)
        # Looked up here, not imported at module level: bitsandbytes is optional and slow
        # to import.
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ImportError(
                "GatedMLP4Bit needs bitsandbytes for its 4-bit weights (pip install "
                "bitsandbytes); note that 4-bit MLPs are not supported yet in this fork"
            )
        raise NotImplementedError(
            "4-bit gated MLPs (load_in_4bit) are not supported yet in this fork; load the "
            "model in float16 or bfloat16 instead"
        )
