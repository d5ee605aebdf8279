"""Keeps classic's module path `transformer_lens.components.rms_norm_pre` importable."""

from transformer_lens.components.rms_norm import RMSNormPre

__all__ = ["RMSNormPre"]
