"""Which processing steps run: the caller's flags, and the per-step switches with the
inexact steps turned off (one warning each); and what both processing paths (a whole state
dict, or streamed pieces) share: the float32 inputs and the folded norm kinds."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from transformer_lens import weight_processing
from transformer_lens.HookedTransformerConfig import HookedTransformerConfig

FOLDED_NORMS = {"LN": "LNPre", "RMS": "RMSPre"}
"""A norm's kind once fold_ln has moved its weights into the next matrices."""


@dataclass(frozen=True)
class ProcessingFlags:
    fold_ln: bool
    center_writing_weights: bool
    center_unembed: bool
    fold_value_biases: bool
    refactor_factored_attn_matrices: bool

    def any(self) -> bool:
        return any(vars(self).values())


def step_flags(cfg: HookedTransformerConfig, flags: ProcessingFlags) -> ProcessingFlags:
    """The steps that run: the caller's flags with the inexact steps turned off once, with
    one warning each (weight_processing says which steps do not apply, and why)."""
    center_writing = flags.center_writing_weights
    skipped = weight_processing.center_writing_weights_skipped(cfg)
    if center_writing and skipped is not None:
        warnings.warn(skipped, stacklevel=4)
        center_writing = False
    center_unembed = flags.center_unembed
    skipped = weight_processing.center_unembed_skipped(cfg)
    if center_unembed and skipped is not None:
        warnings.warn(skipped, stacklevel=4)
        center_unembed = False
    return dataclasses.replace(
        flags, center_writing_weights=center_writing, center_unembed=center_unembed
    )


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


def run_steps(
    state_dict: dict[str, Tensor],
    cfg: HookedTransformerConfig,
    steps: ProcessingFlags,
    layers: Sequence[int] | None = None,
    unembed: bool = True,
) -> dict[str, Tensor]:
    """weight_processing.process_weights with these steps (of `step_flags`), on the given
    layers (all when None) and with or without the unembedding."""
    return weight_processing.process_weights(
        state_dict,
        cfg,
        fold_ln=steps.fold_ln,
        center_writing_weights=steps.center_writing_weights,
        center_unembed=steps.center_unembed,
        fold_value_biases=steps.fold_value_biases,
        refactor_factored_attn_matrices=steps.refactor_factored_attn_matrices,
        layers=layers,
        unembed=unembed,
    )
