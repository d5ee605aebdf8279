"""The activation cache returned by `HookedTransformer.run_with_cache`."""

import difflib
import logging
import warnings
from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from typing import Any

import torch
from jaxtyping import Float, Shaped
from torch import Tensor

from transformer_lens import _cache_analysis, _cache_components
from transformer_lens._cache_analysis import Tokens
from transformer_lens._cache_components import LabelledStack
from transformer_lens.utils import Slice, SliceInput, get_act_name

CacheKey = str | tuple[Any, ...]
"""A full hook name, a shorthand such as "k6", or a tuple such as ("pattern", 0, "attn")."""


class ActivationCache:
    """Activations by hook name, indexable by full name or by `get_act_name` shorthand.

    `cache["q", 0]`, `cache["k6"]`, `cache["resid_pre", -1]` and `cache["scale"]` resolve
    through `get_act_name`; a negative layer counts from `model.cfg.n_layers`.

    The analysis methods (accumulated_resid, decompose_resid, stack_head_results,
    stack_neuron_results, get_full_resid_decomposition, apply_ln_to_stack, logit_attrs,
    compute_head_results) delegate to functions of the cache in `_cache_analysis` and
    `_cache_components`, which know the model only by its attributes.
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

    # ------------------------------------------------------------------ analysis

    def accumulated_resid(
        self,
        layer: int | None = None,
        incl_mid: bool = False,
        apply_ln: bool = False,
        pos_slice: Slice | SliceInput = None,
        mlp_input: bool = False,
        return_labels: bool = False,
    ) -> LabelledStack:
        """The residual stream as it accumulates, one component per point up to `layer`.

        Components: resid_pre of every block up to and including `layer` ("{l}_pre"), with
        incl_mid the resid_mid of blocks below `layer` ("{l}_mid"), with mlp_input the MLP
        input of block `layer`, and at layer n_layers the final residual ("final_post").
        The last component is the residual at `layer` itself. apply_ln divides by the
        cached scale of the norm at `layer`; at n_layers (the logit lens) each component
        gets its own ln_final statistics instead. The norm weight is never applied.
        """
        return _cache_analysis.accumulated_resid(
            self, layer, incl_mid, apply_ln, pos_slice, mlp_input, return_labels
        )

    def decompose_resid(
        self,
        layer: int | None = None,
        mlp_input: bool = False,
        mode: str = "all",
        apply_ln: bool = False,
        pos_slice: Slice | SliceInput = None,
        incl_embeds: bool = True,
        return_labels: bool = False,
    ) -> LabelledStack:
        """The residual at `layer` split into what each sublayer wrote.

        Components: "embed" and "pos_embed" (when it is added to the residual), then
        "{l}_attn_out" and "{l}_mlp_out" for blocks below `layer`, and with mlp_input the
        attention output of block `layer`. mode "attn" or "mlp" keeps only that kind of
        sublayer. With mode "all" and incl_embeds the components sum to the residual.
        """
        return _cache_analysis.decompose_resid(
            self, layer, mlp_input, mode, apply_ln, pos_slice, incl_embeds, return_labels
        )

    def get_full_resid_decomposition(
        self,
        layer: int | None = None,
        mlp_input: bool = False,
        expand_neurons: bool = True,
        apply_ln: bool = False,
        pos_slice: Slice | SliceInput = None,
        return_labels: bool = False,
    ) -> LabelledStack:
        """The residual at `layer` split into heads, neurons, embeddings and biases.

        Components: every head below `layer` ("L{l}H{h}", with mlp_input also the heads
        of block `layer`), every neuron ("L{l}N{n}", or "{l}_mlp_out" per block without
        expand_neurons), "embed", "pos_embed" (when added to the residual), and "bias":
        `model.accumulated_bias(layer, mlp_input)`, without b_out when the MLPs come as
        whole hook_mlp_out (which holds it). The components sum to the residual. Models with post-norms (Gemma-2) have no such split and raise
        ValueError.
        """
        return _cache_analysis.get_full_resid_decomposition(
            self, layer, mlp_input, expand_neurons, apply_ln, pos_slice, return_labels
        )

    def logit_attrs(
        self,
        residual_stack: Float[Tensor, "component *batch_and_pos d_model"],
        tokens: Tokens,
        incorrect_tokens: Tokens | None = None,
        pos_slice: Slice | SliceInput = None,
        batch_slice: Slice | SliceInput = None,
        has_batch_dim: bool = True,
    ) -> Float[Tensor, " component *batch_and_pos"]:
        """How much each component of a final-residual stack adds to the logit of `tokens`
        (minus the logit of `incorrect_tokens` when given).

        The stack is normalised with ln_final's cached scale (apply_ln_to_stack at the final
        layer), then dotted with W_U[:, token]. Tokens are one token (int, str, 0-d tensor)
        for every position, or a tensor shaped like the stack's axes between the component
        and d_model axes (e.g. [batch] after pos_slice=-1). Other shapes raise ValueError.
        b_U is left out: the attributions sum to a logit difference, or to a logit minus b_U.
        """
        return _cache_analysis.logit_attrs(
            self, residual_stack, tokens, incorrect_tokens, pos_slice, batch_slice, has_batch_dim
        )

    def apply_ln_to_stack(
        self,
        residual_stack: Float[Tensor, "*leading d_model"],
        layer: int | None = None,
        mlp_input: bool = False,
        pos_slice: Slice | SliceInput = None,
        batch_slice: Slice | SliceInput = None,
        has_batch_dim: bool = True,
        recompute_ln: bool = False,
    ) -> Float[Tensor, "*leading d_model"]:
        """Normalise each component of a residual stack as the norm at `layer` did.

        The norm is ln_final at n_layers (the default), else `blocks.{layer}.ln1`, or `ln2`
        with mlp_input. LayerNorm types centre each component; every type then divides by
        the cached `hook_scale` of the whole residual, so normalised components sum to the
        normalised residual. The norm weight and bias are never applied: the result is
        exact for models processed with fold_ln. `recompute_ln` divides each component by
        its own scale instead. Without a norm the stack comes back unchanged.

        The stack is [..., batch, pos, d_model] as sliced from the cache with `pos_slice`
        and `batch_slice`, which select the matching cached scales; with has_batch_dim=False
        the stack has no batch axis. Shapes that don't line up raise ValueError.
        """
        return _cache_components.apply_ln_to_stack(
            self,
            residual_stack,
            layer,
            mlp_input,
            pos_slice,
            batch_slice,
            has_batch_dim,
            recompute_ln,
        )

    def compute_head_results(self) -> None:
        """Store `blocks.{l}.attn.hook_result` = hook_z @ W_O per head (excluding b_O) for
        every layer whose result is not cached yet (use_attn_result was off)."""
        _cache_components.compute_head_results(self)

    def stack_head_results(
        self,
        layer: int = -1,
        return_labels: bool = False,
        incl_remainder: bool = False,
        pos_slice: Slice | SliceInput = None,
        apply_ln: bool = False,
    ) -> LabelledStack:
        """Every head's output below `layer` as [layer * n_heads, batch, pos, d_model].

        Results come from hook_result when cached, else from hook_z @ W_O (b_O is left
        out). Labels are "L{l}H{h}"; incl_remainder appends "remainder", the residual at
        `layer` minus the heads. layer=0 gives an empty stack. apply_ln normalises with
        the norm that reads the residual at `layer` (see apply_ln_to_stack).
        """
        return _cache_components.stack_head_results(
            self, layer, return_labels, incl_remainder, pos_slice, apply_ln
        )

    def get_neuron_results(
        self,
        layer: int,
        neuron_slice: Slice | SliceInput = None,
        pos_slice: Slice | SliceInput = None,
    ) -> Float[Tensor, "*batch_pos_neuron d_model"]:
        """Each neuron's output in block `layer`: hook_post[..., n] * W_out[n], as
        [batch, pos, neuron, d_model] (b_out left out; an int neuron_slice drops the axis)."""
        return _cache_components.get_neuron_results(self, layer, neuron_slice, pos_slice)

    def stack_neuron_results(
        self,
        layer: int,
        pos_slice: Slice | SliceInput = None,
        neuron_slice: Slice | SliceInput = None,
        return_labels: bool = False,
        incl_remainder: bool = False,
        apply_ln: bool = False,
    ) -> LabelledStack:
        """Every neuron's output below `layer` as [layer * n_neurons, batch, pos, d_model].

        Labels are "L{l}N{n}". Gated MLPs add b_in inside hook_post, so in every MLP the
        neuron results plus b_out sum to hook_mlp_out. incl_remainder and apply_ln work
        as in stack_head_results.
        """
        return _cache_components.stack_neuron_results(
            self, layer, pos_slice, neuron_slice, return_labels, incl_remainder, apply_ln
        )
