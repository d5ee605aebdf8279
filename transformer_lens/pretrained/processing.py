"""Load a state dict into a model, processing the weights on the way (fold_ln and friends)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from transformer_lens import weight_processing

if TYPE_CHECKING:
    from transformer_lens.HookedTransformer import HookedTransformer

_FOLDED = {"LN": "LNPre", "RMS": "RMSPre"}


def load_and_process(
    model: HookedTransformer,
    state_dict: dict[str, Tensor],
    fold_ln: bool,
    center_writing_weights: bool,
    center_unembed: bool,
    fold_value_biases: bool,
    refactor_factored_attn_matrices: bool,
) -> None:
    cfg = model.cfg
    if fold_ln or center_writing_weights or center_unembed or fold_value_biases:
        # Process in float32 whatever the checkpoint's dtype; loading casts to the model's.
        state_dict = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
    processed = weight_processing.process_weights(
        state_dict,
        cfg,
        fold_ln=fold_ln,
        center_writing_weights=center_writing_weights,
        center_unembed=center_unembed,
        fold_value_biases=fold_value_biases,
        refactor_factored_attn_matrices=refactor_factored_attn_matrices,
    )
    if fold_ln and cfg.normalization_type in _FOLDED:
        cfg.normalization_type = _FOLDED[cfg.normalization_type]
        model._rebuild_norms()
    model.load_state_dict(processed)
