"""Per-head and per-neuron contributions to the residual stream, and norm scaling of stacks.

Mixed into `ActivationCache`. Conventions shared by the cache's analysis methods:
- A residual `layer` is a point in the residual stream, 0..n_layers: the input of block
  `layer` (with `mlp_input`, the input of its MLP); n_layers is the residual entering
  ln_final. None means n_layers; negative values count back from n_layers + 1, so -1 is
  n_layers. Stacks "below layer" hold the components of blocks 0..layer-1.
- `pos_slice`, `batch_slice` and `neuron_slice` go through `utils.Slice`: an int drops the axis.
- Weights are read detached: results are plain analysis values, like the cached activations.
"""

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from transformer_lens.components.layer_norm import LayerNorm, LayerNormPre
from transformer_lens.utils import Slice, SliceInput

# [component, batch, pos, d_model]; batch and pos may be absent (no batch dim, int slices).
Stack = Float[Tensor, "component *batch_and_pos d_model"]
LabelledStack = Stack | tuple[Stack, list[str]]


class CacheCoreMixin:
    """Lookups shared by the analysis methods: resolving layers, residuals and norms."""

    # Provided by ActivationCache.
    cache_dict: dict[str, Tensor]
    model: Any
    has_batch_dim: bool

    def _cached(self, name: str) -> Tensor:
        if name not in self.cache_dict:
            raise KeyError(
                f"{name!r} is not in the cache; run run_with_cache without a names_filter "
                "that drops it"
            )
        return self.cache_dict[name]

    def _resolve_layer(self, layer: int | None) -> int:
        """A residual layer in 0..n_layers (None and -1 are n_layers)."""
        n_layers = self.model.cfg.n_layers
        if layer is None:
            return n_layers
        resolved = layer + n_layers + 1 if layer < 0 else layer
        if not 0 <= resolved <= n_layers:
            raise ValueError(f"layer must be in [-{n_layers + 1}, {n_layers}]; got {layer}")
        return resolved

    def _check_mlp_input(self, layer: int, mlp_input: bool) -> None:
        cfg = self.model.cfg
        if mlp_input and (layer == cfg.n_layers or cfg.attn_only):
            raise ValueError(
                f"mlp_input needs a block with an MLP; got layer {layer} of a model with "
                f"{cfg.n_layers} layers (attn_only={cfg.attn_only})"
            )

    def _has_resid_mid(self) -> bool:
        cfg = self.model.cfg
        return not cfg.attn_only and not cfg.parallel_attn_mlp

    def _residual_at(self, layer: int, mlp_input: bool) -> Float[Tensor, "*batch_and_pos d_model"]:
        """The residual stream at a resolved layer (the MLP input with mlp_input)."""
        n_layers = self.model.cfg.n_layers
        if layer == n_layers:
            return self._cached(f"blocks.{n_layers - 1}.hook_resid_post")
        # A parallel block's MLP reads resid_pre, like its attention.
        if mlp_input and self._has_resid_mid():
            return self._cached(f"blocks.{layer}.hook_resid_mid")
        return self._cached(f"blocks.{layer}.hook_resid_pre")

    def _norm_at(self, layer: int, mlp_input: bool) -> tuple[Any, str]:
        """The norm module that reads the residual at a resolved layer, and its name."""
        if layer == self.model.cfg.n_layers:
            return self.model.ln_final, "ln_final"
        sublayer = "ln2" if mlp_input else "ln1"
        return getattr(self.model.blocks[layer], sublayer), f"blocks.{layer}.{sublayer}"

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
        layer = self._resolve_layer(layer)
        self._check_mlp_input(layer, mlp_input)
        norm, norm_name = self._norm_at(layer, mlp_input)
        if not hasattr(norm, "hook_scale"):
            return residual_stack
        stack = residual_stack
        if isinstance(norm, LayerNorm | LayerNormPre):
            stack = stack - stack.mean(-1, keepdim=True)
        if recompute_ln:
            scale = (stack.float().pow(2).mean(-1, keepdim=True) + norm.eps).sqrt()
        else:
            scale = self._scale_for_stack(norm_name, stack.shape, pos_slice, batch_slice)
            if not has_batch_dim:
                scale = self._drop_batch_axis(scale, batch_slice)
            self._check_scale_fits(scale, stack.shape)
        return (stack / scale.to(stack.device)).to(residual_stack.dtype)

    def _scale_for_stack(
        self,
        norm_name: str,
        stack_shape: torch.Size,
        pos_slice: Slice | SliceInput,
        batch_slice: Slice | SliceInput,
    ) -> Tensor:
        scale = self._cached(f"{norm_name}.hook_scale")
        if scale.ndim != (3 if self.has_batch_dim else 2):
            raise ValueError(
                f"{norm_name}.hook_scale has shape {tuple(scale.shape)}, not [batch, pos, 1]: "
                "a hook edited a per-head input, so no single scale applies to the residual"
            )
        if self.has_batch_dim:
            scale = Slice(batch_slice).apply(scale, dim=0)
        elif batch_slice is not None:
            raise ValueError("batch_slice was given, but this cache has no batch dimension")
        return Slice(pos_slice).apply(scale, dim=-2)

    def _drop_batch_axis(self, scale: Tensor, batch_slice: Slice | SliceInput) -> Tensor:
        """The scale for a stack without a batch axis: the cache's batch must be one row."""
        if not self.has_batch_dim or Slice(batch_slice).mode == "int":
            return scale
        if scale.shape[0] != 1:
            raise ValueError(
                f"The stack has no batch axis, but the cached scale covers {scale.shape[0]} "
                "batch rows; pass batch_slice=<row>"
            )
        return scale[0]

    @staticmethod
    def _check_scale_fits(scale: Tensor, stack_shape: torch.Size) -> None:
        expected = tuple(scale.shape[:-1])
        found = tuple(stack_shape[:-1])[len(stack_shape) - 1 - len(expected) :]
        if len(stack_shape) - 1 < len(expected) or found != expected:
            raise ValueError(
                f"Stack of shape {tuple(stack_shape)} does not fit the cached scale of shape "
                f"{tuple(scale.shape)}: its axes before d_model must end with {expected}. Pass "
                "the pos_slice/batch_slice the stack was made with"
            )


class ComponentResultsMixin(CacheCoreMixin):
    """Head results (z @ W_O per head) and neuron results (post * W_out per neuron)."""

    def _head_results(
        self, layer: int, pos_slice: Slice
    ) -> Float[Tensor, "*batch_and_pos head_index d_model"]:
        name = f"blocks.{layer}.attn.hook_result"
        if name in self.cache_dict:
            return pos_slice.apply(self.cache_dict[name], dim=-3)
        z = pos_slice.apply(self._cached(f"blocks.{layer}.attn.hook_z"), dim=-3)
        W_O = self.model.blocks[layer].attn.W_O.detach()
        return torch.einsum("...he,hed->...hd", z, W_O.to(device=z.device, dtype=z.dtype))

    def compute_head_results(self) -> None:
        """Store `blocks.{l}.attn.hook_result` = hook_z @ W_O per head (excluding b_O) for
        every layer whose result is not cached yet (use_attn_result was off)."""
        for layer in range(self.model.cfg.n_layers):
            name = f"blocks.{layer}.attn.hook_result"
            if name not in self.cache_dict:
                self.cache_dict[name] = self._head_results(layer, Slice(None))

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
        layer = self._resolve_layer(layer)
        pos = Slice(pos_slice)
        components, labels = [], []
        for block in range(layer):
            results = self._head_results(block, pos)
            components.append(results.movedim(-2, 0))
            labels += [f"L{block}H{head}" for head in range(results.shape[-2])]
        stack, labels = self._finish_stack(components, labels, layer, pos, incl_remainder, apply_ln)
        return (stack, labels) if return_labels else stack

    def get_neuron_results(
        self,
        layer: int,
        neuron_slice: Slice | SliceInput = None,
        pos_slice: Slice | SliceInput = None,
    ) -> Float[Tensor, "*batch_pos_neuron d_model"]:
        """Each neuron's output in block `layer`: hook_post[..., n] * W_out[n], as
        [batch, pos, neuron, d_model] (b_out left out; an int neuron_slice drops the axis)."""
        cfg = self.model.cfg
        if cfg.attn_only:
            raise ValueError("This model is attention-only: it has no neurons")
        if not -cfg.n_layers <= layer < cfg.n_layers:
            raise ValueError(f"layer must be a block index below {cfg.n_layers}; got {layer}")
        layer %= cfg.n_layers
        neurons = Slice(neuron_slice)
        post = Slice(pos_slice).apply(self._cached(f"blocks.{layer}.mlp.hook_post"), dim=-2)
        post = neurons.apply(post, dim=-1)
        W_out = neurons.apply(self.model.blocks[layer].mlp.W_out.detach(), dim=0)
        return post[..., None] * W_out.to(device=post.device, dtype=post.dtype)

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
        if self.model.cfg.attn_only:
            raise ValueError("This model is attention-only: it has no neurons")
        layer = self._resolve_layer(layer)
        pos = Slice(pos_slice)
        neurons = Slice(neuron_slice)
        if isinstance(neurons.slice, int):
            # Keep the neuron axis: the stack has one component per neuron.
            neurons = Slice([neurons.slice])
        indices = neurons.indices(self.model.cfg.d_mlp)
        components, labels = [], []
        for block in range(layer):
            results = self.get_neuron_results(block, neurons, pos)
            components.append(results.movedim(-2, 0))
            labels += [f"L{block}N{neuron}" for neuron in indices]
        stack, labels = self._finish_stack(components, labels, layer, pos, incl_remainder, apply_ln)
        return (stack, labels) if return_labels else stack

    def _finish_stack(
        self,
        components: list[Tensor],
        labels: list[str],
        layer: int,
        pos: Slice,
        incl_remainder: bool,
        apply_ln: bool,
    ) -> tuple[Stack, list[str]]:
        """Concatenate components (an empty stack when there are none), then add the
        remainder and apply the norm as asked."""
        residual = pos.apply(self._residual_at(layer, mlp_input=False), dim=-2)
        stack = torch.cat(components) if components else residual.new_zeros((0, *residual.shape))
        if incl_remainder:
            stack = torch.cat([stack, (residual - stack.sum(0))[None]])
            labels = [*labels, "remainder"]
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer, pos_slice=pos)
        return stack, labels
