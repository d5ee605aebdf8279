"""Helpers behind `hook_points`: hook bookkeeping, hook-name suggestions, position slicing.

Kept apart from `hook_points.py` so that module reads as the public API only.
"""

import difflib
import functools
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.hooks import RemovableHandle

HookFunction = Callable[..., Tensor | None]
"""A hook: `fn(tensor, hook=HookPoint) -> Tensor | None`; a returned tensor replaces the input."""

PosSlice = (
    int | np.integer | slice | tuple[int | None, ...] | list[int] | np.ndarray | Tensor | None
)
"""What `run_with_cache(pos_slice=...)` accepts; see `_pos_slice_to_index`."""

PosIndex = slice | Tensor | None

Direction = Literal["fwd", "bwd"]
DirectionOrBoth = Literal["fwd", "bwd", "both"]

_MAX_SUGGESTIONS = 5


@dataclass
class LensHandle:
    """One hook added through `HookPoint.add_hook`: torch's handle, and what `remove_hooks`
    selects on (classic TransformerLens's name and fields)."""

    hook: RemovableHandle
    is_permanent: bool = False
    context_level: int | None = None

    def matches(self, including_permanent: bool, level: int | None) -> bool:
        """Whether `remove_hooks(including_permanent=..., level=...)` removes this hook."""
        return (including_permanent or not self.is_permanent) and (
            level is None or level == self.context_level
        )


def function_name(fn: Callable[..., Any]) -> str:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__name__", type(fn).__name__)


def unknown_hook_message(name: str, valid_names: Iterable[str]) -> str:
    """Say that `name` is no hook point and suggest up to five close valid names.

    Names ending in exactly the same component come first (a bare "hook_resid_pre" means
    "blocks.0.hook_resid_pre", ...), then close whole names, then close last components.
    """
    names = list(valid_names)
    last = _last_component(name)
    same_last = [valid for valid in names if _last_component(valid) == last]
    close_names = difflib.get_close_matches(name, names, n=_MAX_SUGGESTIONS)
    close_lasts = set(difflib.get_close_matches(last, {_last_component(v) for v in names}))
    close_last = [valid for valid in names if _last_component(valid) in close_lasts]
    suggestions = list(dict.fromkeys(same_last + close_names + close_last))[:_MAX_SUGGESTIONS]
    if not suggestions:
        return f"Unknown hook point {name!r}; no similar names. Valid names are the keys of model.hook_dict."
    return f"Unknown hook point {name!r}. Did you mean: {', '.join(map(repr, suggestions))}?"


def _last_component(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _pos_slice_to_index(pos_slice: PosSlice) -> PosIndex:
    """Normalise a `pos_slice` to a slice, a 1-D index tensor, or None (keep everything).

    An int keeps its dimension: `i` means `slice(i, i + 1)`, except that -1 means
    `slice(-1, None)` because `slice(-1, 0)` would be empty.  A tuple is `slice(*t)`;
    a list, array or tensor is a list of positions.
    """
    if pos_slice is None or isinstance(pos_slice, slice):
        return pos_slice
    if isinstance(pos_slice, bool):
        raise TypeError(
            "pos_slice must be an int, slice, tuple, list or tensor of positions, not a bool"
        )
    if isinstance(pos_slice, numbers.Integral):
        start = int(pos_slice)
        return slice(start, None if start == -1 else start + 1)
    if isinstance(pos_slice, tuple):
        if not 1 <= len(pos_slice) <= 3:
            raise ValueError(f"A tuple pos_slice is (start, stop[, step]); got {pos_slice!r}")
        return slice(*pos_slice)
    if isinstance(pos_slice, list | np.ndarray | Tensor):
        index = torch.as_tensor(pos_slice, dtype=torch.long).reshape(-1)
        if torch.as_tensor(pos_slice).ndim > 1:
            raise ValueError(
                f"A pos_slice of positions must be 1-D; got shape {tuple(index.shape)}"
            )
        return index
    raise TypeError(f"Unsupported pos_slice type {type(pos_slice).__name__}")


def select_positions(
    activation: Tensor, axis: int, index: slice | Tensor, hook_name: str
) -> Tensor:
    """Keep only the positions in `index` along `axis`, as a copy not tied to the full tensor."""
    if not -activation.ndim <= axis < activation.ndim:
        raise ValueError(
            f"Hook point {hook_name!r} has pos_axis={axis}, but its activation has shape "
            f"{tuple(activation.shape)}"
        )
    axis %= activation.ndim
    if isinstance(index, slice):
        # A view would keep the whole activation alive in the cache, defeating pos_slice.
        return activation[(slice(None),) * axis + (index,)].clone()
    return activation.index_select(axis, index.to(activation.device))


def backward_from_scalar(out: object) -> None:
    if not isinstance(out, Tensor) or out.numel() != 1:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            "run_with_cache(incl_bwd=True) calls backward() on the model output, which must be a "
            f"scalar tensor (e.g. a loss); got {shape}"
        )
    out.backward()
