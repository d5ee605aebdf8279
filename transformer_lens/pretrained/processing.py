"""Process a whole state dict the caller holds, then check and load it with
`load_state_dict` (`load_and_process_state_dict`; `process_weights_` off the CPU). A
checkpoint, or a CPU model's own weights, are streamed instead (`streaming/`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from transformer_lens.pretrained import processing_steps
from transformer_lens.pretrained.processing_steps import (
    FOLDED_NORMS,
    ProcessingFlags,
    for_processing,
    processing_cfg,
    switch_to_folded_norms,
)

if TYPE_CHECKING:
    from transformer_lens.HookedTransformer import HookedTransformer


def load_and_process(
    model: HookedTransformer, state_dict: dict[str, Tensor], flags: ProcessingFlags
) -> None:
    """Process a whole state dict, then load it (checked before anything changes)."""
    cfg = processing_cfg(model)
    steps = processing_steps.step_flags(cfg, flags)
    processed = processing_steps.run_steps(for_processing(state_dict, flags), cfg, steps)
    if not (flags.fold_ln and model.cfg.normalization_type in FOLDED_NORMS):
        model.load_state_dict(processed)
        return
    norms = _norm_modules(model)
    switch_to_folded_norms(model)
    try:
        model.load_state_dict(processed)
    except BaseException:  # a refused state dict leaves the model exactly as it was
        model.cfg.normalization_type = cfg.normalization_type
        for (owner, name), module in norms.items():
            setattr(owner, name, module)
        model.setup()
        raise


def _norm_modules(model: HookedTransformer) -> dict[tuple[torch.nn.Module, str], torch.nn.Module]:
    """The norm modules a fold replaces, by (owner, attribute name)."""
    owners: list[tuple[torch.nn.Module, str]] = [(model, "ln_final")]
    for block in model.blocks:
        owners += (
            [(block, "ln1"), (block, "ln2"), (block.mlp, "ln")]
            if hasattr(block, "mlp")
            else [(block, "ln1")]
        )
    return {(owner, name): getattr(owner, name) for owner, name in owners if hasattr(owner, name)}
