"""Per-head and per-neuron contributions to the residual stream, and norm scaling of stacks:
the work behind `ActivationCache`'s methods of those names, as functions of the cache.

Conventions shared by the cache's analysis functions (here and in `_cache_analysis`):
- A residual `layer` is a point in the residual stream, 0..n_layers: the input of block
  `layer` (with `mlp_input`, the input of its MLP); n_layers is the residual entering
  ln_final. None means n_layers; negative values count back from n_layers + 1, so -1 is
  n_layers. Stacks "below layer" hold the components of blocks 0..layer-1.
- `pos_slice`, `batch_slice` and `neuron_slice` go through `utils.Slice`: an int drops the axis.
- Weights are read detached: results are plain analysis values, like the cached activations.
- A public method one function calls from another goes through the cache (`cache.x(...)`),
  so a subclass that overrides it is heard, as when these were methods.
"""

from typing import Any, Protocol, runtime_checkable

import torch
from jaxtyping import Float
from torch import Tensor

from transformer_lens.utils import Slice, SliceInput

# [component, batch, pos, d_model]; batch and pos may be absent (no batch dim, int slices).
Stack = Float[Tensor, "component *batch_and_pos d_model"]
LabelledStack = Stack | tuple[Stack, list[str]]


@runtime_checkable
class Cache(Protocol):
    """What the analysis functions read of an ActivationCache: its tensors, its model (any
    object with the model's `cfg`, `blocks`, `ln_final`, `accumulated_bias` and
    `tokens_to_residual_directions`), and the public methods they call each other through."""

    cache_dict: dict[str, Tensor]
    model: Any
    has_batch_dim: bool

    def apply_ln_to_stack(
        self,
        residual_stack: Float[Tensor, "*leading d_model"],
        layer: int | None = None,
        mlp_input: bool = False,
        pos_slice: Slice | SliceInput = None,
        batch_slice: Slice | SliceInput = None,
        has_batch_dim: bool = True,
        recompute_ln: bool = False,
    ) -> Float[Tensor, "*leading d_model"]: ...

    def get_neuron_results(
        self,
        layer: int,
        neuron_slice: Slice | SliceInput = None,
        pos_slice: Slice | SliceInput = None,
    ) -> Float[Tensor, "*batch_pos_neuron d_model"]: ...

    def stack_head_results(
        self,
        layer: int = -1,
        return_labels: bool = False,
        incl_remainder: bool = False,
        pos_slice: Slice | SliceInput = None,
        apply_ln: bool = False,
    ) -> LabelledStack: ...

    def stack_neuron_results(
        self,
        layer: int,
        pos_slice: Slice | SliceInput = None,
        neuron_slice: Slice | SliceInput = None,
        return_labels: bool = False,
        incl_remainder: bool = False,
        apply_ln: bool = False,
    ) -> LabelledStack: ...

    def decompose_resid(
        self,
        layer: int | None = None,
        mlp_input: bool = False,
        mode: str = "all",
        apply_ln: bool = False,
        pos_slice: Slice | SliceInput = None,
        incl_embeds: bool = True,
        return_labels: bool = False,
    ) -> LabelledStack: ...


# ----- lookups shared by the analysis functions ---------------------------------------------


def cached(cache: Cache, name: str) -> Tensor:
    if name not in cache.cache_dict:
        raise KeyError(
            f"{name!r} is not in the cache; run run_with_cache without a names_filter that drops it"
        )
    return cache.cache_dict[name]


def resolve_layer(cache: Cache, layer: int | None) -> int:
    """A residual layer in 0..n_layers (None and -1 are n_layers)."""
    n_layers = cache.model.cfg.n_layers
    if layer is None:
        return n_layers
    resolved = layer + n_layers + 1 if layer < 0 else layer
    if not 0 <= resolved <= n_layers:
        raise ValueError(f"layer must be in [-{n_layers + 1}, {n_layers}]; got {layer}")
    return resolved


def check_mlp_input(cache: Cache, layer: int, mlp_input: bool) -> None:
    cfg = cache.model.cfg
    if mlp_input and (layer == cfg.n_layers or cfg.attn_only):
        raise ValueError(
            f"mlp_input needs a block with an MLP; got layer {layer} of a model with "
            f"{cfg.n_layers} layers (attn_only={cfg.attn_only})"
        )


def has_resid_mid(cache: Cache) -> bool:
    cfg = cache.model.cfg
    return not cfg.attn_only and not cfg.parallel_attn_mlp


def residual_at(
    cache: Cache, layer: int, mlp_input: bool
) -> Float[Tensor, "*batch_and_pos d_model"]:
    """The residual stream at a resolved layer (the MLP input with mlp_input)."""
    n_layers = cache.model.cfg.n_layers
    if layer == n_layers:
        return cached(cache, f"blocks.{n_layers - 1}.hook_resid_post")
    # A parallel block's MLP reads resid_pre, like its attention.
    if mlp_input and has_resid_mid(cache):
        return cached(cache, f"blocks.{layer}.hook_resid_mid")
    return cached(cache, f"blocks.{layer}.hook_resid_pre")


def _norm_at(cache: Cache, layer: int, mlp_input: bool) -> tuple[Any, str]:
    """The norm module that reads the residual at a resolved layer, and its name."""
    if layer == cache.model.cfg.n_layers:
        return cache.model.ln_final, "ln_final"
    sublayer = "ln2" if mlp_input else "ln1"
    return getattr(cache.model.blocks[layer], sublayer), f"blocks.{layer}.{sublayer}"


# ----- norm scaling of stacks ---------------------------------------------------------------


def apply_ln_to_stack(
    cache: Cache,
    residual_stack: Float[Tensor, "*leading d_model"],
    layer: int | None,
    mlp_input: bool,
    pos_slice: Slice | SliceInput,
    batch_slice: Slice | SliceInput,
    has_batch_dim: bool,
    recompute_ln: bool,
) -> Float[Tensor, "*leading d_model"]:
    """See ActivationCache.apply_ln_to_stack."""
    layer = resolve_layer(cache, layer)
    check_mlp_input(cache, layer, mlp_input)
    norm, norm_name = _norm_at(cache, layer, mlp_input)
    if not hasattr(norm, "hook_scale"):
        return residual_stack
    stack = residual_stack
    # LayerNorm and LayerNormPre say so; RMS norms and other modules do not centre.
    if getattr(norm, "subtracts_mean", False):
        stack = stack - stack.mean(-1, keepdim=True)
    if recompute_ln:
        scale = (stack.float().pow(2).mean(-1, keepdim=True) + norm.eps).sqrt()
    else:
        scale = _scale_for_stack(cache, norm_name, pos_slice, batch_slice)
        if not has_batch_dim:
            scale = _drop_batch_axis(cache, scale, batch_slice)
        _check_scale_fits(scale, stack.shape)
    return (stack / scale.to(stack.device)).to(residual_stack.dtype)


def _scale_for_stack(
    cache: Cache,
    norm_name: str,
    pos_slice: Slice | SliceInput,
    batch_slice: Slice | SliceInput,
) -> Tensor:
    scale = cached(cache, f"{norm_name}.hook_scale")
    if scale.ndim != (3 if cache.has_batch_dim else 2):
        raise ValueError(
            f"{norm_name}.hook_scale has shape {tuple(scale.shape)}, not [batch, pos, 1]: "
            "a hook edited a per-head input, so no single scale applies to the residual"
        )
    if cache.has_batch_dim:
        scale = Slice(batch_slice).apply(scale, dim=0)
    elif batch_slice is not None:
        raise ValueError("batch_slice was given, but this cache has no batch dimension")
    return Slice(pos_slice).apply(scale, dim=-2)


def _drop_batch_axis(cache: Cache, scale: Tensor, batch_slice: Slice | SliceInput) -> Tensor:
    """The scale for a stack without a batch axis: the cache's batch must be one row."""
    if not cache.has_batch_dim or Slice(batch_slice).mode == "int":
        return scale
    if scale.shape[0] != 1:
        raise ValueError(
            f"The stack has no batch axis, but the cached scale covers {scale.shape[0]} "
            "batch rows; pass batch_slice=<row>"
        )
    return scale[0]


def _check_scale_fits(scale: Tensor, stack_shape: torch.Size) -> None:
    expected = tuple(scale.shape[:-1])
    found = tuple(stack_shape[:-1])[len(stack_shape) - 1 - len(expected) :]
    if len(stack_shape) - 1 < len(expected) or found != expected:
        raise ValueError(
            f"Stack of shape {tuple(stack_shape)} does not fit the cached scale of shape "
            f"{tuple(scale.shape)}: its axes before d_model must end with {expected}. Pass "
            "the pos_slice/batch_slice the stack was made with"
        )


# ----- head results (z @ W_O per head) and neuron results (post * W_out per neuron) --------


def _head_results(
    cache: Cache, layer: int, pos_slice: Slice
) -> Float[Tensor, "*batch_and_pos head_index d_model"]:
    name = f"blocks.{layer}.attn.hook_result"
    if name in cache.cache_dict:
        return pos_slice.apply(cache.cache_dict[name], dim=-3)
    z = pos_slice.apply(cached(cache, f"blocks.{layer}.attn.hook_z"), dim=-3)
    W_O = cache.model.blocks[layer].attn.W_O.detach()
    return torch.einsum("...he,hed->...hd", z, W_O.to(device=z.device, dtype=z.dtype))


def compute_head_results(cache: Cache) -> None:
    """See ActivationCache.compute_head_results."""
    for layer in range(cache.model.cfg.n_layers):
        name = f"blocks.{layer}.attn.hook_result"
        if name not in cache.cache_dict:
            cache.cache_dict[name] = _head_results(cache, layer, Slice(None))


def stack_head_results(
    cache: Cache,
    layer: int,
    return_labels: bool,
    incl_remainder: bool,
    pos_slice: Slice | SliceInput,
    apply_ln: bool,
) -> LabelledStack:
    """See ActivationCache.stack_head_results."""
    layer = resolve_layer(cache, layer)
    pos = Slice(pos_slice)
    components, labels = [], []
    for block in range(layer):
        results = _head_results(cache, block, pos)
        components.append(results.movedim(-2, 0))
        labels += [f"L{block}H{head}" for head in range(results.shape[-2])]
    stack, labels = _finish_stack(cache, components, labels, layer, pos, incl_remainder, apply_ln)
    return (stack, labels) if return_labels else stack


def get_neuron_results(
    cache: Cache,
    layer: int,
    neuron_slice: Slice | SliceInput,
    pos_slice: Slice | SliceInput,
) -> Float[Tensor, "*batch_pos_neuron d_model"]:
    """See ActivationCache.get_neuron_results."""
    cfg = cache.model.cfg
    if cfg.attn_only:
        raise ValueError("This model is attention-only: it has no neurons")
    if not -cfg.n_layers <= layer < cfg.n_layers:
        raise ValueError(f"layer must be a block index below {cfg.n_layers}; got {layer}")
    layer %= cfg.n_layers
    neurons = Slice(neuron_slice)
    post = Slice(pos_slice).apply(cached(cache, f"blocks.{layer}.mlp.hook_post"), dim=-2)
    post = neurons.apply(post, dim=-1)
    W_out = neurons.apply(cache.model.blocks[layer].mlp.W_out.detach(), dim=0)
    return post[..., None] * W_out.to(device=post.device, dtype=post.dtype)


def stack_neuron_results(
    cache: Cache,
    layer: int,
    pos_slice: Slice | SliceInput,
    neuron_slice: Slice | SliceInput,
    return_labels: bool,
    incl_remainder: bool,
    apply_ln: bool,
) -> LabelledStack:
    """See ActivationCache.stack_neuron_results."""
    if cache.model.cfg.attn_only:
        raise ValueError("This model is attention-only: it has no neurons")
    layer = resolve_layer(cache, layer)
    pos = Slice(pos_slice)
    neurons = Slice(neuron_slice)
    if isinstance(neurons.slice, int):
        # Keep the neuron axis: the stack has one component per neuron.
        neurons = Slice([neurons.slice])
    indices = neurons.indices(cache.model.cfg.d_mlp)
    components, labels = [], []
    for block in range(layer):
        results = cache.get_neuron_results(block, neurons, pos)
        components.append(results.movedim(-2, 0))
        labels += [f"L{block}N{neuron}" for neuron in indices]
    stack, labels = _finish_stack(cache, components, labels, layer, pos, incl_remainder, apply_ln)
    return (stack, labels) if return_labels else stack


def _finish_stack(
    cache: Cache,
    components: list[Tensor],
    labels: list[str],
    layer: int,
    pos: Slice,
    incl_remainder: bool,
    apply_ln: bool,
) -> tuple[Stack, list[str]]:
    """Concatenate components (an empty stack when there are none), then add the
    remainder and apply the norm as asked."""
    residual = pos.apply(residual_at(cache, layer, mlp_input=False), dim=-2)
    stack = torch.cat(components) if components else residual.new_zeros((0, *residual.shape))
    if incl_remainder:
        stack = torch.cat([stack, (residual - stack.sum(0))[None]])
        labels = [*labels, "remainder"]
    if apply_ln:
        stack = cache.apply_ln_to_stack(stack, layer, pos_slice=pos)
    return stack, labels
