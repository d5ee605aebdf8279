"""AbstractAttention: kept so that `from transformer_lens.components import AbstractAttention` works."""

from transformer_lens.components.attention import Attention as AbstractAttention

__all__ = ["AbstractAttention"]
