"""Check a state dict against a model before loading it, naming every problem at once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

# Classic TransformerLens stored these per layer; we build masks on the fly instead.
_IGNORED_CLASSIC_BUFFERS = ("attn.mask", "attn.IGNORE")
# Buffers derived from the config: filled from the model when a state dict lacks them.
_DERIVED_BUFFERS = ("attn.rotary_sin", "attn.rotary_cos")


def check_and_complete_state_dict(
    model: nn.Module, state_dict: Mapping[str, Any], strict: bool
) -> dict[str, Tensor]:
    """The entries of `state_dict` to load into `model`: raises one ValueError naming every
    missing or unexpected key (when strict) and every wrongly shaped one, and TypeError for
    non-tensor values. Classic attn.mask/attn.IGNORE buffers and rotary tables are dropped
    (the model keeps its own tables)."""
    expected = model.state_dict()
    incoming = {k: v for k, v in state_dict.items() if not k.endswith(_IGNORED_CLASSIC_BUFFERS)}
    not_tensors = {k: type(v).__name__ for k, v in incoming.items() if not isinstance(v, Tensor)}
    if not_tensors:
        raise TypeError(
            f"State dict values must be torch.Tensors; got these types instead: {not_tensors}"
        )
    # Rotary tables follow from the config (and are shared between layers and models):
    # never overwrite them from a state dict, whose copy may be rounded to another dtype.
    derived_incoming = [k for k in incoming if k.endswith(_DERIVED_BUFFERS) and k in expected]
    problems = []
    missing = [k for k in expected if k not in incoming and not k.endswith(_DERIVED_BUFFERS)]
    unexpected = [k for k in incoming if k not in expected]
    if strict and missing:
        problems.append(f"missing keys: {missing}")
    if strict and unexpected:
        problems.append(f"unexpected keys: {unexpected}")
    wrong_shapes = [
        f"{k}: got {tuple(v.shape)}, expected {tuple(expected[k].shape)}"
        for k, v in incoming.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if wrong_shapes:
        problems.append(f"wrongly shaped keys: {wrong_shapes}")
    if problems:
        raise ValueError("State dict does not match the model: " + "; ".join(problems))
    derived = set(derived_incoming)
    return {k: v for k, v in incoming.items() if k in expected and k not in derived}


def is_derived_buffer(key: str) -> bool:
    """Whether a state-dict key is a buffer the model fills from its config (never missing)."""
    return key.endswith(_DERIVED_BUFFERS)
