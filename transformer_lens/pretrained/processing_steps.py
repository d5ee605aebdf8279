"""Which processing steps run: the caller's flags, and the per-step switches with the
inexact steps turned off (one warning each); and what both processing paths (a whole state
dict, or streamed pieces) share: the float32 inputs, the config processing reads, the switch
of a model's norms to their folded kind."""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig

if TYPE_CHECKING:
    from transformer_lens.HookedTransformer import HookedTransformer

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


class Steps(TypedDict):
    fold_ln: bool
    center_writing_weights: bool
    center_unembed: bool
    fold_value_biases: bool
    refactor_factored_attn_matrices: bool


def step_flags(cfg: HookedTransformerConfig, flags: ProcessingFlags) -> Steps:
    """Per-step switches, with the inexact steps turned off once, with one warning each."""
    center_writing = flags.center_writing_weights
    if center_writing and (cfg.normalization_type not in ("LN", "LNPre") or cfg.final_rms):
        warnings.warn(
            "center_writing_weights skipped: it is exact only for LayerNorm models without "
            f"final_rms (normalization_type={cfg.normalization_type!r}, final_rms={cfg.final_rms})",
            stacklevel=4,
        )
        center_writing = False
    center_unembed = flags.center_unembed
    if center_unembed and cfg.output_logits_soft_cap > 0:
        warnings.warn(
            "center_unembed skipped: the logits are soft-capped "
            f"(output_logits_soft_cap={cfg.output_logits_soft_cap}), so shifting them would "
            "change the probabilities",
            stacklevel=4,
        )
        center_unembed = False
    return Steps(
        fold_ln=flags.fold_ln,
        center_writing_weights=center_writing,
        center_unembed=center_unembed,
        fold_value_biases=flags.fold_value_biases,
        refactor_factored_attn_matrices=flags.refactor_factored_attn_matrices,
    )


def vocabulary_kept_by(steps: Steps) -> set[str]:
    """The vocabulary matrices whose values these processing steps leave as they are."""
    kept = set()
    if not steps["center_writing_weights"]:
        kept.add("embed.W_E")
    if not (steps["fold_ln"] or steps["center_unembed"]):
        kept.add("unembed.W_U")
    return kept


def for_processing(tensors: dict[str, Tensor], flags: ProcessingFlags) -> dict[str, Tensor]:
    """Process in float32 whatever the checkpoint's dtype; loading casts to the model's."""
    if not flags.any():
        return tensors
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}


def processing_cfg(model: HookedTransformer) -> HookedTransformerConfig:
    """The config the processing reads: the model's, before its norms are switched."""
    return copy.copy(model.cfg)


def switch_to_folded_norms(model: HookedTransformer) -> None:
    assert model.cfg.normalization_type is not None
    model.cfg.normalization_type = FOLDED_NORMS[model.cfg.normalization_type]
    model._rebuild_norms()
