"""MoE: the classic name, kept importable; mixture-of-experts MLPs are not supported yet."""

from typing import Any

from torch import nn


class MoE(nn.Module):
    """Placeholder for mixture-of-experts MLPs: constructing one raises NotImplementedError."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            "Mixture-of-experts MLPs (Mixtral, OLMoE) are not supported yet in this fork"
        )
