"""Activation patching: rerun a corrupted input once per index, with one activation slice
replaced by its value from a clean run, and record a metric of the output logits.

Head axes. A result over heads has one entry per head of the patched activation: query
heads (head_index, n_heads) for z, q and the pattern. For k and v the head axis is
kv_head_index: n_key_value_heads on grouped models (hook_k/hook_v carry one entry per
key/value head), n_heads on multi-head or ungrouped models. Patching key/value head j of a
grouped model changes what every query head in its group (h // group_size == j) reads.

pandas is optional: `index_df` takes any DataFrame-like object with `columns` and
`to_numpy()`; only `make_df_from_ranges` and `return_index_df` without an `index_df`
import pandas.
"""

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from transformer_lens._utils_optional import import_optional
from transformer_lens.hook_points import HookPoint
from transformer_lens.utils import get_act_name

Logits = Tensor
CorruptedActivation = Tensor
PatchedActivation = Tensor
# Classic's axis names, plus kv_head_index for the key/value heads of grouped models.
AxisNames = Literal["layer", "pos", "head_index", "head", "src_pos", "dest_pos", "kv_head_index"]
PatchSetter = Callable[[CorruptedActivation, Sequence[int], Tensor], PatchedActivation]
Metric = Callable[[Tensor], Any]
PatchFunction = Callable[[Any, Tensor, Any, Metric], Tensor]

_POSITION_AXES = ("pos", "dest_pos", "src_pos")
_HEAD_AXES = ("head", "head_index", "kv_head_index")


def generic_activation_patch(
    model: Any,
    corrupted_tokens: Int[Tensor, "batch pos"],
    clean_cache: Any,
    patching_metric: Metric,
    patch_setter: PatchSetter,
    activation_name: str,
    index_axis_names: Sequence[str] | None = None,
    index_df: Any = None,
    return_index_df: bool = False,
) -> Tensor | tuple[Tensor, Any]:
    """Patch `activation_name` from `clean_cache` into runs on `corrupted_tokens`.

    Give exactly one of:
    - index_axis_names, e.g. ("layer", "pos", "head"): every index of the product of these
      axes is patched and the result has one axis per name. "layer" comes first; sizes are
      n_layers, the token length for "pos"/"dest_pos"/"src_pos", and the head axis of the
      cached activation for "head"/"head_index"/"kv_head_index" (so k/v on grouped models
      get n_key_value_heads entries);
    - index_df, a DataFrame whose columns name the axes (first "layer") and whose rows are
      the indices to patch; the result is 1-D, one entry per row.

    `patch_setter(corrupted_activation, index_without_layer, clean_activation)` returns
    the patched activation. The result holds `float(patching_metric(logits))` per index,
    on the model's device. return_index_df also returns the indices as a DataFrame.
    """
    run = _PatchRun(
        model, corrupted_tokens, clean_cache, patching_metric, patch_setter, activation_name
    )
    if (index_axis_names is None) == (index_df is None):
        raise ValueError("Give exactly one of index_axis_names and index_df")
    if index_axis_names is not None:
        pandas = _pandas() if return_index_df else None
        results, indices = _patch_grid(run, list(index_axis_names))
        if pandas is None:
            return results
        return results, pandas.DataFrame(indices, columns=list(index_axis_names))
    _check_layer_first([str(column) for column in index_df.columns])
    indices = [tuple(int(value) for value in row) for row in index_df.to_numpy()]
    results = _patch_each(run, indices)
    return (results, index_df) if return_index_df else results


class _PatchRun(NamedTuple):
    model: Any
    corrupted_tokens: Tensor
    clean_cache: Any
    metric: Metric
    setter: PatchSetter
    activation_name: str


def _patch_grid(run: _PatchRun, axis_names: list[str]) -> tuple[Tensor, list[tuple[int, ...]]]:
    """Patch every index of the product of the axes; results shaped like the axes."""
    _check_layer_first(axis_names)
    shape = [_axis_size(axis, run) for axis in axis_names]
    indices = list(itertools.product(*(range(size) for size in shape)))
    return _patch_each(run, indices).reshape(shape), indices


def _check_layer_first(axis_names: list[str]) -> None:
    if not axis_names or axis_names[0] != "layer":
        raise ValueError(f"The first index axis must be 'layer'; got {axis_names}")


def _patch_each(run: _PatchRun, indices: list[tuple[int, ...]]) -> Float[Tensor, " index"]:
    values = [_patched_metric(run, index) for index in indices]
    device = getattr(run.model.cfg, "device", None)
    return torch.tensor(values, dtype=torch.float32, device=device)


def _axis_size(axis: str, run: _PatchRun) -> int:
    if axis == "layer":
        return int(run.model.cfg.n_layers)
    if axis in _POSITION_AXES:
        return int(run.corrupted_tokens.shape[-1])
    if axis in _HEAD_AXES:
        hook_name = get_act_name(run.activation_name, 0)
        return int(run.clean_cache[hook_name].shape[_head_axis(hook_name)])
    raise ValueError(
        f"Unknown index axis {axis!r}; expected 'layer', one of {_POSITION_AXES} or "
        f"one of {_HEAD_AXES}"
    )


def _head_axis(hook_name: str) -> int:
    """Head axis of an attention activation: [batch, head, query_pos, key_pos] for patterns
    and scores, [batch, pos, head, d_head] for q, k, v, z and result."""
    return 1 if hook_name.endswith(("hook_pattern", "hook_attn_scores")) else 2


def _patched_metric(run: _PatchRun, index: tuple[int, ...]) -> float:
    layer, *rest = index
    hook_name = get_act_name(run.activation_name, layer)
    clean = run.clean_cache[hook_name]
    fired = []

    def patch(activation: Tensor, hook: HookPoint) -> Tensor:
        if activation.shape != clean.shape:
            raise ValueError(
                f"{hook_name}: the corrupted run has shape {tuple(activation.shape)}, the "
                f"clean cache {tuple(clean.shape)}; patching needs equal batch and length"
            )
        fired.append(True)
        return run.setter(activation.clone(), rest, clean.to(activation.device))

    with torch.no_grad():
        logits = run.model.run_with_hooks(run.corrupted_tokens, fwd_hooks=[(hook_name, patch)])
    if not fired:
        raise ValueError(f"{hook_name} never fired, so nothing was patched")
    return float(run.metric(logits))


def _pandas() -> Any:
    return import_optional("pandas", "return_index_df without index_df (a pandas DataFrame)")


def make_df_from_ranges(column_max_ranges: Sequence[int], column_names: Sequence[str]) -> Any:
    """A pandas DataFrame of every index combination: column i runs over
    range(column_max_ranges[i]), rows in itertools.product order (last column fastest).
    Such a frame is what generic_activation_patch takes as index_df."""
    if len(column_max_ranges) != len(column_names):
        raise ValueError(
            f"{len(column_max_ranges)} ranges for {len(column_names)} columns {list(column_names)}"
        )
    pandas = import_optional("pandas", "make_df_from_ranges")
    rows = list(itertools.product(*(range(size) for size in column_max_ranges)))
    return pandas.DataFrame(rows, columns=list(column_names))


# ---------------------------------------------------------------------------- patch setters
# Each takes (corrupted_activation, index without the layer, clean_activation) and returns the
# corrupted activation with the indexed slice taken from the clean one. "heads" is
# head_index, or kv_head_index for k and v.


def layer_pos_patch_setter(
    corrupted_activation: Float[Tensor, "batch pos d_model"],
    index: Sequence[int],
    clean_activation: Float[Tensor, "batch pos d_model"],
) -> Float[Tensor, "batch pos d_model"]:
    """Copy the clean activation at position index = (pos,) into the corrupted one, in place."""
    (pos,) = index
    corrupted_activation[:, pos] = clean_activation[:, pos]
    return corrupted_activation


def layer_pos_head_vector_patch_setter(
    corrupted_activation: Float[Tensor, "batch pos heads d_head"],
    index: Sequence[int],
    clean_activation: Float[Tensor, "batch pos heads d_head"],
) -> Float[Tensor, "batch pos heads d_head"]:
    """Copy the clean vector at index = (pos, head) into the corrupted one, in place."""
    pos, head = index
    corrupted_activation[:, pos, head] = clean_activation[:, pos, head]
    return corrupted_activation


def layer_head_vector_patch_setter(
    corrupted_activation: Float[Tensor, "batch pos heads d_head"],
    index: Sequence[int],
    clean_activation: Float[Tensor, "batch pos heads d_head"],
) -> Float[Tensor, "batch pos heads d_head"]:
    """Copy the clean vectors of head index = (head,), at every position, in place."""
    (head,) = index
    corrupted_activation[:, :, head] = clean_activation[:, :, head]
    return corrupted_activation


def layer_head_pattern_patch_setter(
    corrupted_activation: Float[Tensor, "batch head_index query_pos key_pos"],
    index: Sequence[int],
    clean_activation: Float[Tensor, "batch head_index query_pos key_pos"],
) -> Float[Tensor, "batch head_index query_pos key_pos"]:
    """Copy the whole clean pattern of head index = (head,) into the corrupted one, in place."""
    (head,) = index
    corrupted_activation[:, head] = clean_activation[:, head]
    return corrupted_activation


def layer_head_pos_pattern_patch_setter(
    corrupted_activation: Float[Tensor, "batch head_index query_pos key_pos"],
    index: Sequence[int],
    clean_activation: Float[Tensor, "batch head_index query_pos key_pos"],
) -> Float[Tensor, "batch head_index query_pos key_pos"]:
    """Copy the clean pattern row of index = (head, dest_pos), in place."""
    head, dest_pos = index
    corrupted_activation[:, head, dest_pos] = clean_activation[:, head, dest_pos]
    return corrupted_activation


def layer_head_dest_src_pos_pattern_patch_setter(
    corrupted_activation: Float[Tensor, "batch head_index query_pos key_pos"],
    index: Sequence[int],
    clean_activation: Float[Tensor, "batch head_index query_pos key_pos"],
) -> Float[Tensor, "batch head_index query_pos key_pos"]:
    """Copy the single clean attention weight at index = (head, dest_pos, src_pos), in place."""
    head, dest_pos, src_pos = index
    corrupted_activation[:, head, dest_pos, src_pos] = clean_activation[:, head, dest_pos, src_pos]
    return corrupted_activation


# ---------------------------------------------------------------------------- specialised helpers


def _specialise(
    name: str,
    activation_name: str,
    patch_setter: PatchSetter,
    index_axis_names: tuple[str, ...],
    doc: str,
) -> PatchFunction:
    def patch(
        model: Any,
        corrupted_tokens: Int[Tensor, "batch pos"],
        clean_cache: Any,
        patching_metric: Metric,
    ) -> Tensor:
        run = _PatchRun(
            model, corrupted_tokens, clean_cache, patching_metric, patch_setter, activation_name
        )
        return _patch_grid(run, list(index_axis_names))[0]

    patch.__name__ = patch.__qualname__ = name
    patch.__doc__ = doc
    return patch


def _per_position(activation_name: str) -> PatchFunction:
    return _specialise(
        f"get_act_patch_{activation_name}",
        activation_name,
        layer_pos_patch_setter,
        ("layer", "pos"),
        f"Patch hook_{activation_name} at each (layer, pos): result [layer, pos].",
    )


def _per_head(part: str, by_pos: bool) -> PatchFunction:
    """Patch z ("out"), q, k or v per head, at each position or at all positions at once."""
    activation_name = "z" if part == "out" else part
    head_axis = "kv_head_index" if part in ("k", "v") else "head_index"
    axes = ("layer", "pos", head_axis) if by_pos else ("layer", head_axis)
    where = "at each position" if by_pos else "at every position at once"
    doc = f"Patch hook_{activation_name} of each head {where}: result [{', '.join(axes)}]."
    if part in ("k", "v"):
        doc += (
            " Head axis = kv_head_index (n_key_value_heads) for k/v on grouped models; "
            "n_heads on multi-head or ungrouped models."
        )
    setter = layer_pos_head_vector_patch_setter if by_pos else layer_head_vector_patch_setter
    suffix = "by_pos" if by_pos else "all_pos"
    return _specialise(
        f"get_act_patch_attn_head_{part}_{suffix}", activation_name, setter, axes, doc
    )


get_act_patch_resid_pre = _per_position("resid_pre")
get_act_patch_resid_mid = _per_position("resid_mid")
get_act_patch_attn_out = _per_position("attn_out")
get_act_patch_mlp_out = _per_position("mlp_out")
get_act_patch_attn_head_out_by_pos = _per_head("out", by_pos=True)
get_act_patch_attn_head_q_by_pos = _per_head("q", by_pos=True)
get_act_patch_attn_head_k_by_pos = _per_head("k", by_pos=True)
get_act_patch_attn_head_v_by_pos = _per_head("v", by_pos=True)
get_act_patch_attn_head_out_all_pos = _per_head("out", by_pos=False)
get_act_patch_attn_head_q_all_pos = _per_head("q", by_pos=False)
get_act_patch_attn_head_k_all_pos = _per_head("k", by_pos=False)
get_act_patch_attn_head_v_all_pos = _per_head("v", by_pos=False)
get_act_patch_attn_head_pattern_all_pos = _specialise(
    "get_act_patch_attn_head_pattern_all_pos",
    "pattern",
    layer_head_pattern_patch_setter,
    ("layer", "head_index"),
    "Patch each head's whole attention pattern: result [layer, head_index].",
)
get_act_patch_attn_head_pattern_by_pos = _specialise(
    "get_act_patch_attn_head_pattern_by_pos",
    "pattern",
    layer_head_pos_pattern_patch_setter,
    ("layer", "head_index", "dest_pos"),
    "Patch each head's attention pattern row at each destination position: result "
    "[layer, head_index, dest_pos].",
)
get_act_patch_attn_head_pattern_dest_src_pos = _specialise(
    "get_act_patch_attn_head_pattern_dest_src_pos",
    "pattern",
    layer_head_dest_src_pos_pattern_patch_setter,
    ("layer", "head_index", "dest_pos", "src_pos"),
    "Patch each single attention weight: result [layer, head_index, dest_pos, src_pos].",
)


def _pad_heads(result: Tensor, n_heads: int) -> Tensor:
    """Pad the last (head) axis with NaN up to n_heads."""
    return F.pad(result, (0, n_heads - result.shape[-1]), value=math.nan)


def get_act_patch_block_every(
    model: Any, corrupted_tokens: Int[Tensor, "batch pos"], clean_cache: Any, metric: Metric
) -> Float[Tensor, "3 layer pos"]:
    """resid_pre, attn_out and mlp_out patched at each (layer, pos): [3, layer, pos]."""
    patches = (get_act_patch_resid_pre, get_act_patch_attn_out, get_act_patch_mlp_out)
    return torch.stack([patch(model, corrupted_tokens, clean_cache, metric) for patch in patches])


def get_act_patch_attn_head_all_pos_every(
    model: Any, corrupted_tokens: Int[Tensor, "batch pos"], clean_cache: Any, metric: Metric
) -> Float[Tensor, "5 layer head_index"]:
    """Head output (z), q, k, v and pattern patched per head at every position:
    [5, layer, head_index], in that order.

    On grouped models k and v have n_key_value_heads heads (kv_head_index): their rows hold
    key/value head j at column j, and the columns n_key_value_heads..n_heads-1 are NaN."""
    n_heads = model.cfg.n_heads
    patches = (
        get_act_patch_attn_head_out_all_pos,
        get_act_patch_attn_head_q_all_pos,
        get_act_patch_attn_head_k_all_pos,
        get_act_patch_attn_head_v_all_pos,
        get_act_patch_attn_head_pattern_all_pos,
    )
    results = [patch(model, corrupted_tokens, clean_cache, metric) for patch in patches]
    return torch.stack([_pad_heads(result, n_heads) for result in results])


def get_act_patch_attn_head_by_pos_every(
    model: Any, corrupted_tokens: Int[Tensor, "batch pos"], clean_cache: Any, metric: Metric
) -> Float[Tensor, "5 layer pos head_index"]:
    """Head output (z), q, k, v and pattern patched per head and position:
    [5, layer, pos, head_index], in that order (the pattern by destination position).

    On grouped models k and v have n_key_value_heads heads (kv_head_index): their rows hold
    key/value head j at column j, and the columns n_key_value_heads..n_heads-1 are NaN."""
    n_heads = model.cfg.n_heads
    patches = (
        get_act_patch_attn_head_out_by_pos,
        get_act_patch_attn_head_q_by_pos,
        get_act_patch_attn_head_k_by_pos,
        get_act_patch_attn_head_v_by_pos,
    )
    results = [patch(model, corrupted_tokens, clean_cache, metric) for patch in patches]
    pattern = get_act_patch_attn_head_pattern_by_pos(model, corrupted_tokens, clean_cache, metric)
    results.append(pattern.transpose(1, 2))
    return torch.stack([_pad_heads(result, n_heads) for result in results])
