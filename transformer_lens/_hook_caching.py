"""What `HookedRootModule`'s caching methods do: which hook points to cache, the hook that
stores a detached copy of each activation (or gradient), and the run that fills an
`ActivationCache`. `hook_points` keeps the classic method names and delegates here."""

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from transformer_lens._hook_registry import (
    HookFunction,
    PosIndex,
    PosSlice,
    _pos_slice_to_index,
    backward_from_scalar,
    select_positions,
)
from transformer_lens.ActivationCache import ActivationCache

NameOrFilter = str | Callable[[str], bool]
HookSpec = tuple[NameOrFilter, HookFunction]
NamesFilter = str | Sequence[str] | Callable[[str], bool] | None


@runtime_checkable
class CachingModel(Protocol):
    """What `run_with_cache` uses of a HookedRootModule."""

    def get_caching_hooks(
        self,
        names_filter: NamesFilter = None,
        incl_bwd: bool = False,
        device: str | torch.device | None = None,
        remove_batch_dim: bool = False,
        cache: dict[str, Tensor] | None = None,
        pos_slice: PosSlice = None,
    ) -> tuple[dict[str, Tensor], list[HookSpec], list[HookSpec]]: ...

    def hooks(
        self,
        fwd_hooks: Sequence[HookSpec] = (),
        bwd_hooks: Sequence[HookSpec] = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
    ) -> AbstractContextManager[Any]: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


@runtime_checkable
class NamedHookPoint(Protocol):
    """What the saving hook reads of the HookPoint that calls it."""

    name: str | None
    pos_axis: int | None


def names_to_cache(
    names_filter: NamesFilter,
    matching: Callable[[NameOrFilter], list[str]],
    check: Callable[[str], None],
) -> list[str]:
    """The hook names a names_filter selects: `matching` resolves a name or filter as
    `add_hook` does, `check` refuses a name that is unknown or cannot fire."""
    if names_filter is None:
        return matching(lambda name: True)
    if isinstance(names_filter, str) or callable(names_filter):
        return matching(names_filter)
    if isinstance(names_filter, list | tuple):
        for name in names_filter:
            if not isinstance(name, str):
                raise TypeError(
                    "names_filter as a list or tuple must hold hook names (str); got "
                    f"{name!r} of type {type(name).__name__}"
                )
            check(name)
        return list(dict.fromkeys(names_filter))
    raise TypeError(
        "names_filter must be None, a hook name (str), a list or tuple of hook names, or a "
        f"callable; got {type(names_filter).__name__}"
    )


def caching_hooks(
    names: list[str],
    incl_bwd: bool,
    device: str | torch.device | None,
    remove_batch_dim: bool,
    cache: dict[str, Tensor] | None,
    pos_slice: PosSlice,
) -> tuple[dict[str, Tensor], list[HookSpec], list[HookSpec]]:
    """The dict to fill and the (name, hook) pairs that fill it, forward and backward."""
    cache = {} if cache is None else cache
    pos_index = _pos_slice_to_index(pos_slice)
    save_activation = _saving_hook(cache, "", device, remove_batch_dim, pos_index)
    fwd_hooks: list[HookSpec] = [(name, save_activation) for name in names]
    bwd_hooks: list[HookSpec] = []
    if incl_bwd:
        save_gradient = _saving_hook(cache, "_grad", device, remove_batch_dim, pos_index)
        bwd_hooks = [(name, save_gradient) for name in names]
    return cache, fwd_hooks, bwd_hooks


def _saving_hook(
    cache: dict[str, Tensor],
    suffix: str,
    device: str | torch.device | None,
    remove_batch_dim: bool,
    pos_index: PosIndex,
) -> HookFunction:
    def save_activation(tensor: Tensor, hook: NamedHookPoint) -> None:
        stored = tensor.detach()
        if pos_index is not None and hook.pos_axis is not None:
            stored = select_positions(stored, hook.pos_axis, pos_index, str(hook.name))
        if remove_batch_dim:
            stored = stored[0]
        if device is not None:
            stored = stored.to(device)
        cache[f"{hook.name}{suffix}"] = stored

    return save_activation


def run_with_cache(
    model: CachingModel,
    model_args: tuple[Any, ...],
    model_kwargs: dict[str, Any],
    names_filter: NamesFilter,
    device: str | torch.device | None,
    remove_batch_dim: bool,
    incl_bwd: bool,
    reset_hooks_end: bool,
    clear_contexts: bool,
    pos_slice: PosSlice,
    return_cache_object: bool,
) -> tuple[Any, Any]:
    """See HookedRootModule.run_with_cache."""
    cache_dict, fwd_hooks, bwd_hooks = model.get_caching_hooks(
        names_filter, incl_bwd, device, remove_batch_dim, pos_slice=pos_slice
    )
    with model.hooks(fwd_hooks, bwd_hooks, reset_hooks_end, clear_contexts):
        out = model(*model_args, **model_kwargs)
        if incl_bwd:
            backward_from_scalar(out)
    if not return_cache_object:
        return out, cache_dict
    return out, ActivationCache(cache_dict, model, has_batch_dim=not remove_batch_dim)
