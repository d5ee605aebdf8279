"""Hook points: named identity modules through which users read and edit activations.

`HookPoint` wraps torch's forward and full-backward module hooks, checks what a hook
returns, and remembers which hooks are permanent and which `hooks()` context added them.
`HookedRootModule` names every HookPoint of a model, adds hooks by name or by filter,
and runs the model with hooks or with an activation cache (what is cached and how lives
in `_hook_caching`; the methods here keep the classic names and delegate).
"""

import logging
from collections.abc import Callable, Iterator, Sequence, ValuesView
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from typing_extensions import Self

from transformer_lens import _hook_caching
from transformer_lens._errors import ClassicAssertionError
from transformer_lens._hook_caching import HookSpec, NameOrFilter, NamesFilter
from transformer_lens._hook_registry import (
    Direction,
    DirectionOrBoth,
    HookFunction,
    LensHandle,
    PosSlice,
    function_name,
    unknown_hook_message,
)

__all__ = [
    "DeviceType",
    "HookFunction",
    "HookPoint",
    "HookedRootModule",
    "LensHandle",
    "NamesFilter",
    "PosSlice",
]

DeviceType = torch.device | None


class HookPoint(nn.Module):
    """An identity module that marks an activation users can hook by name.

    `pos_axis` is the position axis of the activation, counting the batch axis (None if
    it has none); `run_with_cache(pos_slice=...)` slices along it.  With
    `copy_before_hooks`, forward hooks receive a contiguous copy, so they may edit
    broadcast views in place; without any forward hook the input itself is returned,
    which callers use to tell an untouched view from an edited one.
    """

    def __init__(self, *, pos_axis: int | None = 1, copy_before_hooks: bool = False) -> None:
        super().__init__()
        self.pos_axis = pos_axis
        self.copy_before_hooks = copy_before_hooks
        self.name: str | None = None
        self.ctx: dict[Any, Any] = {}
        # Classic's bookkeeping: one LensHandle per hook, in the order the hooks run.
        self.fwd_hooks: list[LensHandle] = []
        self.bwd_hooks: list[LensHandle] = []

    def forward(self, x: Tensor) -> Tensor:
        """Return `x` unchanged (a contiguous copy when `copy_before_hooks` and a forward hook
        is attached); attached hooks then see, and may replace, the result."""
        if self.copy_before_hooks and self._forward_hooks:
            # Always a copy, even of a contiguous view (a head axis of size 1), so an
            # in-place edit never reaches the tensor the caller broadcast from.
            return x.clone(memory_format=torch.contiguous_format)
        return x

    def has_hooks(self) -> bool:
        """Whether any hook function is attached (the model skips work nobody observes)."""
        return bool(self._forward_hooks or self._backward_hooks)

    def add_hook(
        self,
        hook: HookFunction,
        dir: Direction = "fwd",
        is_permanent: bool = False,
        level: int | None = None,
        prepend: bool = False,
    ) -> None:
        """Attach `hook(tensor, hook=self)`; a returned tensor replaces the activation or gradient.

        A backward hook belongs to the forward passes run while it is attached: a
        `backward()` through their outputs calls it even after it was removed (as in classic
        TransformerLens, and as torch records module hooks), while later forwards never see it.
        """
        if dir == "fwd":
            handle = self.register_forward_hook(self._forward_adapter(hook), prepend=prepend)
            handles = self.fwd_hooks
        elif dir == "bwd":
            handle = self.register_full_backward_hook(self._backward_adapter(hook), prepend=prepend)
            handles = self.bwd_hooks
        else:
            raise ValueError(f"dir must be 'fwd' or 'bwd', got {dir!r}")
        lens_handle = LensHandle(handle, is_permanent, level)
        if prepend:
            handles.insert(0, lens_handle)
        else:
            handles.append(lens_handle)

    def add_perma_hook(self, hook: HookFunction, dir: Direction = "fwd") -> None:
        """Attach a permanent hook: `remove_hooks` keeps it unless `including_permanent`."""
        self.add_hook(hook, dir=dir, is_permanent=True)

    def _forward_adapter(
        self, hook: HookFunction
    ) -> Callable[[nn.Module, tuple[Any, ...], Tensor], Tensor | None]:
        def run_forward_hook(
            module: nn.Module, inputs: tuple[Any, ...], output: Tensor
        ) -> Tensor | None:
            result = hook(output, hook=self)
            self._check_hook_result(result, output, hook, "activation")
            return result

        return run_forward_hook

    def _backward_adapter(
        self, hook: HookFunction
    ) -> Callable[[nn.Module, Any, Any], tuple[Tensor, ...] | None]:
        def run_backward_hook(
            module: nn.Module, grad_input: Any, grad_output: Any
        ) -> tuple[Tensor, ...] | None:
            # Torch gives every backward hook the original grad_output but threads earlier
            # hooks' replacements through grad_input; for an identity module grad_input is
            # therefore the gradient as edited so far.
            grad = grad_input[0] if grad_input[0] is not None else grad_output[0]
            if grad is None:
                return None
            result = hook(grad, hook=self)
            self._check_hook_result(result, grad, hook, "gradient")
            if result is None or grad_input[0] is None:
                return None
            return (result, *grad_input[1:])

        return run_backward_hook

    def _check_hook_result(
        self, result: object, reference: Tensor, hook: HookFunction, what: str
    ) -> None:
        if result is None:
            return
        if not isinstance(result, Tensor):
            raise TypeError(
                f"Hook {function_name(hook)!r} on hook point {self.name!r} returned "
                f"{type(result).__name__}; a hook must return None or a torch.Tensor"
            )
        if result.shape != reference.shape or result.dtype != reference.dtype:
            raise ValueError(
                f"Hook {function_name(hook)!r} on hook point {self.name!r} returned a tensor of "
                f"shape {tuple(result.shape)} and dtype {result.dtype}, but the {what} has shape "
                f"{tuple(reference.shape)} and dtype {reference.dtype}"
            )

    def remove_hooks(
        self,
        dir: DirectionOrBoth = "fwd",
        including_permanent: bool = False,
        level: int | None = None,
    ) -> None:
        """Remove the matching hooks; `level=None` matches every context level."""
        if dir not in ("fwd", "bwd", "both"):
            raise ValueError(f"dir must be 'fwd', 'bwd' or 'both', got {dir!r}")
        if dir in ("fwd", "both"):
            self.fwd_hooks = _removed(self.fwd_hooks, including_permanent, level)
        if dir in ("bwd", "both"):
            self.bwd_hooks = _removed(self.bwd_hooks, including_permanent, level)

    def clear_context(self) -> None:
        """Empty `ctx`, the dict hook functions may use to keep state between calls."""
        self.ctx = {}

    def layer(self) -> int:
        """The layer index after "blocks." in this hook point's name."""
        parts = (self.name or "").split(".")
        for part, following in zip(parts, parts[1:], strict=False):
            if part == "blocks" and following.isdigit():
                return int(following)
        raise ValueError(
            f"Hook point {self.name!r} has no layer: its name contains no 'blocks.<n>.'"
        )


def _removed(
    handles: list[LensHandle], including_permanent: bool, level: int | None
) -> list[LensHandle]:
    """Remove the matching hooks from torch; return the handles kept."""
    kept = []
    for handle in handles:
        if handle.matches(including_permanent, level):
            handle.hook.remove()
        else:
            kept.append(handle)
    return kept


class HookedRootModule(nn.Module):
    """A model whose HookPoints can be hooked by name; call `setup()` after building it."""

    def __init__(self, *args: Any) -> None:
        super().__init__()
        self.is_caching = False
        # Only ever increases, so every hooks() context gets a level no other one used.
        self.context_level = 0
        self.mod_dict: dict[str, nn.Module] = {}
        self.hook_dict: dict[str, HookPoint] = {}

    def setup(self) -> None:
        """Index all submodules and HookPoints by name and give each HookPoint its name."""
        self.mod_dict = {name: module for name, module in self.named_modules() if name}
        self.hook_dict = {}
        for name, module in self.mod_dict.items():
            if isinstance(module, HookPoint):
                module.name = name
                self.hook_dict[name] = module

    def hook_points(self) -> ValuesView[HookPoint]:
        """Every HookPoint of the model, as indexed by the last `setup()`."""
        return self.hook_dict.values()

    def _hook_unavailable_reason(self, name: str) -> str | None:
        """Why the hook point `name` cannot fire under the current config; None if it can."""
        return None

    def _check_hook_name(self, name: str) -> None:
        if name not in self.hook_dict:
            raise ValueError(unknown_hook_message(name, self.hook_dict))
        reason = self._hook_unavailable_reason(name)
        if reason is not None:
            # Classic asserted the flag a hook needs; keep that type beside ValueError.
            raise ClassicAssertionError(reason)

    def _matching_hook_names(self, name_or_filter: NameOrFilter) -> list[str]:
        """An explicit name is checked; a filter silently skips hook points that cannot fire."""
        if isinstance(name_or_filter, str):
            self._check_hook_name(name_or_filter)
            return [name_or_filter]
        return [
            name
            for name in self.hook_dict
            if name_or_filter(name) and self._hook_unavailable_reason(name) is None
        ]

    def add_hook(
        self,
        name: NameOrFilter,
        hook: HookFunction,
        dir: Direction = "fwd",
        is_permanent: bool = False,
        level: int | None = None,
        prepend: bool = False,
    ) -> None:
        """Add `hook` to the hook point `name`, or to every hook point whose name passes the filter."""
        for hook_name in self._matching_hook_names(name):
            self.check_and_add_hook(
                self.hook_dict[hook_name],
                hook_name,
                hook,
                dir=dir,
                is_permanent=is_permanent,
                level=level,
                prepend=prepend,
            )

    def check_and_add_hook(
        self,
        hook_point: HookPoint,
        hook_point_name: str,
        hook: HookFunction,
        dir: Direction = "fwd",
        is_permanent: bool = False,
        level: int | None = None,
        prepend: bool = False,
    ) -> None:
        """Run `check_hooks_to_add`, then attach the hook: every hook added by name or filter
        passes through here, so a subclass can veto or log hooks in one place."""
        self.check_hooks_to_add(
            hook_point, hook_point_name, hook, dir=dir, is_permanent=is_permanent, prepend=prepend
        )
        hook_point.add_hook(hook, dir=dir, is_permanent=is_permanent, level=level, prepend=prepend)

    def check_hooks_to_add(
        self,
        hook_point: HookPoint,
        hook_point_name: str,
        hook: HookFunction,
        dir: Direction = "fwd",
        is_permanent: bool = False,
        prepend: bool = False,
    ) -> None:
        """Override to refuse a hook (raise) before it is attached; accepts every hook here.
        Hook names and the flags they need are checked before this is called."""

    def add_perma_hook(
        self, name: NameOrFilter, hook: HookFunction, dir: Direction = "fwd"
    ) -> None:
        """Add a permanent hook: `reset_hooks()` and `hooks()` contexts leave it in place
        unless told `including_permanent=True`."""
        self.add_hook(name, hook, dir=dir, is_permanent=True)

    def _add_hook_specs(
        self, fwd_hooks: Sequence[HookSpec], bwd_hooks: Sequence[HookSpec], level: int | None
    ) -> None:
        for name, hook in fwd_hooks:
            self.add_hook(name, hook, dir="fwd", level=level)
        for name, hook in bwd_hooks:
            self.add_hook(name, hook, dir="bwd", level=level)

    def clear_contexts(self) -> None:
        """Empty the `ctx` dict of every HookPoint."""
        for hook_point in self.hook_points():
            hook_point.clear_context()

    def remove_all_hook_fns(
        self,
        direction: DirectionOrBoth = "both",
        including_permanent: bool = False,
        level: int | None = None,
    ) -> None:
        """Remove hooks from every HookPoint: `direction` is "fwd", "bwd" or "both"; permanent
        hooks only with `including_permanent`; `level=None` matches every context level."""
        for hook_point in self.hook_points():
            hook_point.remove_hooks(direction, including_permanent=including_permanent, level=level)

    def reset_hooks(
        self,
        clear_contexts: bool = True,
        direction: DirectionOrBoth = "both",
        including_permanent: bool = False,
        level: int | None = None,
    ) -> None:
        """Remove hooks as `remove_all_hook_fns` does, optionally empty every hook context,
        and mark the model as no longer caching."""
        if clear_contexts:
            self.clear_contexts()
        self.remove_all_hook_fns(direction, including_permanent, level=level)
        self.is_caching = False

    @contextmanager
    def hooks(
        self,
        fwd_hooks: Sequence[HookSpec] = (),
        bwd_hooks: Sequence[HookSpec] = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
    ) -> Iterator[Self]:
        """Add hooks at a fresh context level; on exit, however it happens, remove only those."""
        self.context_level += 1
        level = self.context_level
        try:
            try:
                self._add_hook_specs(fwd_hooks, bwd_hooks, level)
            except BaseException:
                self.remove_all_hook_fns(level=level)
                raise
            yield self
        finally:
            if reset_hooks_end:
                self.reset_hooks(clear_contexts, including_permanent=False, level=level)

    def run_with_hooks(
        self,
        *model_args: Any,
        fwd_hooks: Sequence[HookSpec] = (),
        bwd_hooks: Sequence[HookSpec] = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
        **model_kwargs: Any,
    ) -> Any:
        """Run `self(*model_args, **model_kwargs)` with the given `(name or filter, hook)` pairs.

        The hooks are removed when it returns (unless reset_hooks_end is False); backward
        hooks still run for a later `backward()` through this run's output."""
        with self.hooks(fwd_hooks, bwd_hooks, reset_hooks_end, clear_contexts) as hooked:
            return hooked(*model_args, **model_kwargs)

    def _names_to_cache(self, names_filter: NamesFilter) -> list[str]:
        return _hook_caching.names_to_cache(
            names_filter, self._matching_hook_names, self._check_hook_name
        )

    def get_caching_hooks(
        self,
        names_filter: NamesFilter = None,
        incl_bwd: bool = False,
        device: str | torch.device | None = None,
        remove_batch_dim: bool = False,
        cache: dict[str, Tensor] | None = None,
        pos_slice: PosSlice = None,
    ) -> tuple[dict[str, Tensor], list[HookSpec], list[HookSpec]]:
        """Hooks that store detached activations (and gradients as `name + "_grad"`) in a dict."""
        names = self._names_to_cache(names_filter)
        return _hook_caching.caching_hooks(
            names, incl_bwd, device, remove_batch_dim, cache, pos_slice
        )

    def add_caching_hooks(
        self,
        names_filter: NamesFilter = None,
        incl_bwd: bool = False,
        device: str | torch.device | None = None,
        remove_batch_dim: bool = False,
        cache: dict[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Add caching hooks until the next `reset_hooks()`; return the dict they fill."""
        cache, fwd_hooks, bwd_hooks = self.get_caching_hooks(
            names_filter, incl_bwd, device, remove_batch_dim, cache
        )
        self._add_hook_specs(fwd_hooks, bwd_hooks, level=None)
        self.is_caching = True
        return cache

    def cache_all(
        self,
        cache: dict[str, Tensor] | None,
        incl_bwd: bool = False,
        device: DeviceType = None,
        remove_batch_dim: bool = False,
    ) -> dict[str, Tensor]:
        """Deprecated classic name: `add_caching_hooks` on every hook point, filling `cache`."""
        logging.warning("cache_all is deprecated; use run_with_cache or add_caching_hooks")
        return self.add_caching_hooks(
            lambda name: True, incl_bwd, device, remove_batch_dim, cache=cache
        )

    def cache_some(
        self,
        cache: dict[str, Tensor] | None,
        names: Callable[[str], bool],
        incl_bwd: bool = False,
        device: DeviceType = None,
        remove_batch_dim: bool = False,
    ) -> dict[str, Tensor]:
        """Deprecated classic name: `add_caching_hooks` on the hook points `names` accepts."""
        logging.warning("cache_some is deprecated; use run_with_cache or add_caching_hooks")
        return self.add_caching_hooks(names, incl_bwd, device, remove_batch_dim, cache=cache)

    def run_with_cache(
        self,
        *model_args: Any,
        names_filter: NamesFilter = None,
        device: str | torch.device | None = None,
        remove_batch_dim: bool = False,
        incl_bwd: bool = False,
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
        pos_slice: PosSlice = None,
        return_cache_object: bool = True,
        **model_kwargs: Any,
    ) -> tuple[Any, Any]:
        """Run the model, caching activations; return `(output, ActivationCache or dict)`.

        With `incl_bwd`, the output must be a scalar; `backward()` is called on it and the
        gradients are cached too.
        """
        return _hook_caching.run_with_cache(
            self, model_args, model_kwargs, names_filter, device, remove_batch_dim, incl_bwd,
            reset_hooks_end, clear_contexts, pos_slice, return_cache_object,
        )  # fmt: skip
