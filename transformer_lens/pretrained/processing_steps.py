"""What both processing paths (a whole state dict, or streamed pieces) share: the float32
inputs, the folded norm kinds, and which vocabulary matrices the steps leave as they are.
The steps themselves, and their flags (`ProcessingFlags`), are weight_processing's."""

from __future__ import annotations

from torch import Tensor

from transformer_lens.weight_processing import ProcessingFlags

__all__ = ["FOLDED_NORMS", "ProcessingFlags", "for_processing", "vocabulary_kept_by"]

FOLDED_NORMS = {"LN": "LNPre", "RMS": "RMSPre"}
"""A norm's kind once fold_ln has moved its weights into the next matrices."""


def vocabulary_kept_by(steps: ProcessingFlags) -> set[str]:
    """The vocabulary matrices whose values these processing steps leave as they are."""
    kept = set()
    if not steps.center_writing_weights:
        kept.add("embed.W_E")
    if not (steps.fold_ln or steps.center_unembed):
        kept.add("unembed.W_U")
    return kept


def for_processing(tensors: dict[str, Tensor], flags: ProcessingFlags) -> dict[str, Tensor]:
    """Process in float32 whatever the checkpoint's dtype; loading casts to the model's."""
    if not flags.any():
        return tensors
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
