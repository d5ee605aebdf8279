"""The activation cache returned by `HookedTransformer.run_with_cache`."""

import difflib
import logging
import warnings
from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from typing import Any

import torch
from jaxtyping import Shaped
from torch import Tensor

from transformer_lens._cache_analysis import CacheAnalysisMixin
from transformer_lens.utils import Slice, SliceInput, get_act_name

CacheKey = str | tuple[Any, ...]
"""A full hook name, a shorthand such as "k6", or a tuple such as ("pattern", 0, "attn")."""


class ActivationCache(CacheAnalysisMixin):
    """Activations by hook name, indexable by full name or by `get_act_name` shorthand.

    `cache["q", 0]`, `cache["k6"]`, `cache["resid_pre", -1]` and `cache["scale"]` resolve
    through `get_act_name`; a negative layer counts from `model.cfg.n_layers`.

    The analysis methods (accumulated_resid, decompose_resid, stack_head_results,
    stack_neuron_results, get_full_resid_decomposition, apply_ln_to_stack, logit_attrs,
    compute_head_results) live in `_cache_analysis` and `_cache_components`.
    """

    def __init__(self, cache_dict: dict[str, Tensor], model: Any, has_batch_dim: bool = True):
        self.cache_dict = cache_dict
        self.model = model
        self.has_batch_dim = has_batch_dim
        self.has_embed = "hook_embed" in cache_dict
        self.has_pos_embed = "hook_pos_embed" in cache_dict

    # ------------------------------------------------------------------ mapping interface

    def __getitem__(self, key: CacheKey) -> Tensor:
        if isinstance(key, str) and key in self.cache_dict:
            return self.cache_dict[key]
        name = self._resolve_key(key)
        if name not in self.cache_dict:
            close = difflib.get_close_matches(name, list(self.cache_dict), n=3)
            hint = f"; did you mean one of {close}?" if close else ""
            raise KeyError(f"{name!r} (from key {key!r}) is not in the cache{hint}")
        return self.cache_dict[name]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str) and key in self.cache_dict:
            return True
        if not isinstance(key, str | tuple):
            return False
        return self._resolve_key(key) in self.cache_dict

    def __len__(self) -> int:
        return len(self.cache_dict)

    def __iter__(self) -> Iterator[str]:
        return iter(self.cache_dict)

    def keys(self) -> KeysView[str]:
        """The full hook names held, in the order they were cached."""
        return self.cache_dict.keys()

    def values(self) -> ValuesView[Tensor]:
        """The cached tensors, in the same order as `keys()`."""
        return self.cache_dict.values()

    def items(self) -> ItemsView[str, Tensor]:
        """(full hook name, tensor) pairs."""
        return self.cache_dict.items()

    def __repr__(self) -> str:
        return f"ActivationCache with keys {list(self.cache_dict)}"

    def _resolve_key(self, key: CacheKey) -> str:
        """The full hook name for a shorthand or tuple key."""
        if isinstance(key, str):
            return get_act_name(key)
        name, *rest = key
        if rest and isinstance(rest[0], int) and rest[0] < 0:
            rest[0] += self.model.cfg.n_layers
        return get_act_name(name, *rest)

    # ------------------------------------------------------------------ moving and reshaping

    def to(self, device: str | torch.device, move_model: bool = False) -> "ActivationCache":
        """Move every cached tensor (and the model when move_model) to `device`, in place."""
        warnings.warn(
            "ActivationCache.to is deprecated; move tensors as you read them instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        self.cache_dict = {name: tensor.to(device) for name, tensor in self.cache_dict.items()}
        if move_model:
            self.model.to(device)
        return self

    def toggle_autodiff(self, mode: bool = False) -> None:
        """Turn gradient tracking on or off for the whole process, not only this cache."""
        logging.warning("Changed the global state, set autodiff to %s", mode)
        torch.set_grad_enabled(mode)

    def remove_batch_dim(self) -> None:
        """Drop the batch axis of every tensor, in place; the batch must have size 1."""
        if not self.has_batch_dim:
            raise ValueError("This cache has no batch dimension to remove")
        wrong = {name: tuple(t.shape) for name, t in self.cache_dict.items() if t.shape[:1] != (1,)}
        if wrong:
            raise ValueError(f"remove_batch_dim needs a batch of size 1; these differ: {wrong}")
        self.cache_dict = {name: tensor[0] for name, tensor in self.cache_dict.items()}
        self.has_batch_dim = False

    def apply_slice_to_batch_dim(self, batch_slice: Slice | SliceInput) -> "ActivationCache":
        """A new cache holding `batch_slice` of the batch; an int drops the batch axis."""
        if not self.has_batch_dim:
            raise ValueError("Cannot slice the batch of a cache that has no batch dimension")
        batch_slice = Slice(batch_slice)
        sliced = {
            name: batch_slice.apply(tensor, dim=0) for name, tensor in self.cache_dict.items()
        }
        return ActivationCache(sliced, self.model, has_batch_dim=batch_slice.mode != "int")

    def stack_activation(
        self, activation_name: str, layer: int = -1, sublayer_type: str | None = None
    ) -> Shaped[Tensor, " layer *rest"]:
        """Stack `activation_name` from every layer below `layer` (-1: all layers)."""
        n_layers = self.model.cfg.n_layers if layer == -1 else layer
        if n_layers <= 0:
            raise ValueError(f"layer must be positive or -1, got {layer}")
        names = [get_act_name(activation_name, index, sublayer_type) for index in range(n_layers)]
        return torch.stack([self[name] for name in names], dim=0)
