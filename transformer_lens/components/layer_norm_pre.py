"""Keeps classic's module path `transformer_lens.components.layer_norm_pre` importable."""

from transformer_lens.components.layer_norm import LayerNormPre

__all__ = ["LayerNormPre"]
