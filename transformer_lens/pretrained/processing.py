"""Load weights into a model, processing them on the way (fold_ln and friends).

Two paths. A state dict the caller already holds is processed whole, then checked and loaded
by `load_state_dict`. A checkpoint is streamed piece by piece (the embedding, each layer, the
unembedding): each piece is read, processed and copied into the final parameters before the
next is read, so at most one piece exists beside the model.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import torch
from torch import Tensor

from transformer_lens import weight_processing
from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.pretrained.convert import PlannedWeight

if TYPE_CHECKING:
    from transformer_lens.HookedTransformer import HookedTransformer

_FOLDED = {"LN": "LNPre", "RMS": "RMSPre"}


@dataclass(frozen=True)
class ProcessingFlags:
    fold_ln: bool
    center_writing_weights: bool
    center_unembed: bool
    fold_value_biases: bool
    refactor_factored_attn_matrices: bool

    def any(self) -> bool:
        return any(vars(self).values())


def load_and_process(
    model: HookedTransformer, state_dict: dict[str, Tensor], flags: ProcessingFlags
) -> None:
    """Process a whole state dict, then load it (checked before anything changes)."""
    cfg = _processing_cfg(model)
    processed = weight_processing.process_weights(
        _for_processing(state_dict, flags), cfg, **_step_flags(cfg, flags)
    )
    if flags.fold_ln and model.cfg.normalization_type in _FOLDED:
        _switch_to_folded_norms(model)
    model.load_state_dict(processed)


def stream_and_process(
    model: HookedTransformer,
    planned: list[PlannedWeight],
    get_tensor: Callable[[str], Tensor],
    flags: ProcessingFlags,
) -> None:
    """Read, process and copy one piece at a time into the model's parameters."""
    cfg = _processing_cfg(model)
    steps = _step_flags(cfg, flags)
    if flags.fold_ln and model.cfg.normalization_type in _FOLDED:
        _switch_to_folded_norms(model)
    targets = dict(model.named_parameters())
    loaded: set[str] = set()
    for layers, unembed, piece in _pieces(planned):
        tensors = {p.key: p.load(cfg, get_tensor) for p in piece}
        processed = weight_processing.process_weights(
            _for_processing(tensors, flags), cfg, layers=layers, unembed=unembed, **steps
        )
        _copy_into(targets, processed)
        loaded.update(processed)
        del tensors, processed
    missing = sorted(set(targets) - loaded)
    if missing:
        raise ValueError(f"Checkpoint left these parameters unset: {missing}")


def _pieces(
    planned: list[PlannedWeight],
) -> Iterator[tuple[list[int], bool, list[PlannedWeight]]]:
    """(layers, is the unembedding piece, weights): embedding first, then each layer, then
    the unembedding (ln_final folds into W_U, so they travel together)."""
    by_layer: dict[int, list[PlannedWeight]] = {}
    embed, unembed = [], []
    for weight in planned:
        if weight.layer is not None:
            by_layer.setdefault(weight.layer, []).append(weight)
        elif weight.key.startswith(("unembed.", "ln_final.")):
            unembed.append(weight)
        else:
            embed.append(weight)
    yield [], False, embed
    for layer in sorted(by_layer):
        yield [layer], False, by_layer[layer]
    yield [], True, unembed


def _copy_into(targets: dict[str, torch.nn.Parameter], tensors: dict[str, Tensor]) -> None:
    unexpected = sorted(set(tensors) - set(targets))
    if unexpected:
        raise ValueError(f"Checkpoint produced keys the model does not have: {unexpected}")
    with torch.no_grad():
        for key, value in tensors.items():
            target = targets[key]
            if target.shape != value.shape:
                raise ValueError(f"{key}: got {tuple(value.shape)}, expected {tuple(target.shape)}")
            target.copy_(value)  # keeps the parameter's layout and dtype


def _for_processing(tensors: dict[str, Tensor], flags: ProcessingFlags) -> dict[str, Tensor]:
    """Process in float32 whatever the checkpoint's dtype; loading casts to the model's."""
    if not flags.any():
        return tensors
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}


def _processing_cfg(model: HookedTransformer) -> HookedTransformerConfig:
    """The config the processing reads: the model's, before its norms are switched."""
    return copy.copy(model.cfg)


class _Steps(TypedDict):
    fold_ln: bool
    center_writing_weights: bool
    center_unembed: bool
    fold_value_biases: bool
    refactor_factored_attn_matrices: bool


def _step_flags(cfg: HookedTransformerConfig, flags: ProcessingFlags) -> _Steps:
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
    return _Steps(
        fold_ln=flags.fold_ln,
        center_writing_weights=center_writing,
        center_unembed=center_unembed,
        fold_value_biases=flags.fold_value_biases,
        refactor_factored_attn_matrices=flags.refactor_factored_attn_matrices,
    )


def _switch_to_folded_norms(model: HookedTransformer) -> None:
    assert model.cfg.normalization_type is not None
    model.cfg.normalization_type = _FOLDED[model.cfg.normalization_type]
    model._rebuild_norms()
