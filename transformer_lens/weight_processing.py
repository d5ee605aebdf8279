"""Weight processing: pure functions from a state dict to a new state dict.

Every step keeps the model's log-probabilities (API.md §8); `center_unembed` shifts each
position's logits by a constant. No step mutates its input dict or tensors: each works on a
shallow copy and replaces the entries it changes. Keys a step does not know (buffers, Gemma-2
post norms, q/k norms) pass through untouched.

Order: fold_layer_norm → center_writing_weights → center_unembed → fold_value_biases →
refactor_factored_attn_matrices. After `fold_layer_norm` the caller switches the config from
LN to LNPre (RMS to RMSPre).
"""

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from jaxtyping import Float
from torch import Tensor

from transformer_lens.FactoredMatrix import FactoredMatrix

StateDict = dict[str, Tensor]
# (weight key, bias key or None, centre the folded weight?)
FoldTargets = Sequence[tuple[str, str | None, bool]]

_NORMS_WITH_WEIGHTS = ("LN", "RMS")


@dataclass(frozen=True)
class ProcessingFlags:
    """The processing steps, declared once: every entry point (from_pretrained and its
    no-processing twin, load_and_process_state_dict, process_weights_, the loader) builds
    one of these from its own classic parameters, with `from_arguments`. The defaults are
    from_pretrained's."""

    fold_ln: bool = True
    center_writing_weights: bool = True
    center_unembed: bool = True
    fold_value_biases: bool = True
    refactor_factored_attn_matrices: bool = False

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> "ProcessingFlags":
        """The flags among an entry point's arguments (its `locals()`); a flag the entry
        point does not take keeps its default (process_weights_ always folds value biases)."""
        names = [field.name for field in dataclasses.fields(cls)]
        return cls(**{name: bool(arguments[name]) for name in names if name in arguments})

    @classmethod
    def none(cls) -> "ProcessingFlags":
        """Every step off: the checkpoint's weights as they are."""
        return cls(False, False, False, False, False)

    def any(self) -> bool:
        """Whether any step is on."""
        return any(dataclasses.astuple(self))

    def as_keywords(self) -> dict[str, Any]:
        """The flags as keyword arguments of an entry point (typed Any for mypy: they go
        into signatures with other parameters)."""
        return dataclasses.asdict(self)

    def that_apply(self, cfg: "WeightConfig") -> "ProcessingFlags":
        """These flags with the steps that are inexact for cfg turned off, one warning each
        (the steps' own text; the steps then do not run, so they do not warn again)."""
        turned_off = {}
        for name, skipped in (
            ("center_writing_weights", center_writing_weights_skipped(cfg)),
            ("center_unembed", center_unembed_skipped(cfg)),
        ):
            if skipped is not None and getattr(self, name):
                warnings.warn(skipped, stacklevel=4)
                turned_off[name] = False
        return dataclasses.replace(self, **turned_off)


# Makes an uninitialised tensor of like's shape and layout in the given dtype.
Allocate = Callable[[Tensor, torch.dtype], Tensor]


def _as_it_is(tensor: Tensor) -> Tensor:
    """Read a tensor as it is (the default workspace's `read`)."""
    return tensor


@dataclass(frozen=True)
class Workspace:
    """How processing reads its inputs and where it writes the folded matrices. The default
    reads every tensor as it is and writes new tensors. A streamed load passes `read` =
    a float32 copy on first use (in reused memory, of only what a step reads, so a weight
    no step touches comes out as the very tensor that went in) and `allocate` = reused
    buffers; it owns those buffers and copies the results out before reusing them.
    `allocate` uses `out=`, which records no gradients: without autograd only."""

    read: Callable[[Tensor], Tensor] = _as_it_is
    allocate: Allocate | None = None

    def get(self, state_dict: Mapping[str, Tensor], key: str) -> Tensor:
        """state_dict[key] as processing reads it."""
        return self.read(state_dict[key])

    def get_or_none(self, state_dict: Mapping[str, Tensor], key: str | None) -> Tensor | None:
        """state_dict[key] as processing reads it, or None when key is None or absent."""
        return None if key is None or key not in state_dict else self.read(state_dict[key])


AS_IT_IS = Workspace()


def _layers(cfg: "WeightConfig", layers: Sequence[int] | None) -> Sequence[int]:
    """The layers a step processes: all by default, or a subset when loading piece by piece."""
    return range(cfg.n_layers) if layers is None else layers


@runtime_checkable
class WeightConfig(Protocol):
    """The config fields weight processing reads; HookedTransformerConfig provides them."""

    n_layers: int
    n_heads: int
    n_key_value_heads: int | None
    d_model: int
    d_head: int
    normalization_type: str | None
    final_rms: bool
    gated_mlp: bool
    attn_only: bool
    parallel_attn_mlp: bool
    act_fn: str | None
    positional_embedding_type: str
    num_experts: int | None
    use_normalization_before_and_after: bool
    output_logits_soft_cap: float


def _kv_keys(cfg: WeightConfig, layer: int) -> tuple[str, str, str, str]:
    """Keys of W_K, W_V, b_K, b_V: grouped models store them as `_W_K` etc."""
    prefix = f"blocks.{layer}.attn.{'_' if cfg.n_key_value_heads is not None else ''}"
    return prefix + "W_K", prefix + "W_V", prefix + "b_K", prefix + "b_V"


def _fold_norm_into(
    weight: Float[Tensor, "*heads d_in d_out"],
    bias: Float[Tensor, "*heads d_out"] | None,
    norm_w: Float[Tensor, " d_in"],
    norm_b: Float[Tensor, " d_in"] | None,
    center: bool,
    allocate: Allocate | None = None,
) -> tuple[Float[Tensor, "*heads d_in d_out"], Float[Tensor, "*heads d_out"] | None]:
    """Fold `x ↦ norm_w·x + norm_b` into the linear map `x ↦ x @ weight + bias` that reads
    it; the folded weight is written into `allocate`'s tensor when given, else a new one."""
    if norm_b is not None:
        # Σ_i norm_b[i]·weight[..., i, :] as a vector-matrix product: no weight-sized temporary
        through = norm_b @ weight
        bias = through if bias is None else bias + through
    if allocate is None:
        weight = norm_w[:, None] * weight
    else:
        out = allocate(weight, torch.result_type(norm_w, weight))
        weight = torch.mul(norm_w[:, None], weight, out=out)
    if center:
        # The normalized input has zero mean over d_in, so each column's mean never matters.
        # In place: the scaled weight is this function's own new tensor.
        weight.sub_(weight.mean(-2, keepdim=True))
    return weight, bias


def _fold_norm(
    state_dict: StateDict,
    norm: str,
    targets: FoldTargets,
    layer_norm: bool,
    fold_biases: bool,
    center_weights: bool,
    workspace: Workspace,
) -> None:
    """Fold the norm stored under `norm` into `targets` (weight key, bias key, centre it?).

    Works in place on the caller's fresh copy; the folded norm keys are removed.
    """
    if f"{norm}.w" not in state_dict:
        raise ValueError(f"{norm}.w is missing: is this state dict already folded?")
    norm_w = workspace.read(state_dict.pop(f"{norm}.w"))
    norm_b = state_dict.pop(f"{norm}.b", None) if layer_norm and fold_biases else None
    norm_b = None if norm_b is None else workspace.read(norm_b)
    for weight_key, bias_key, center in targets:
        weight, bias = _fold_norm_into(
            workspace.get(state_dict, weight_key),
            workspace.get_or_none(state_dict, bias_key),
            norm_w,
            norm_b if bias_key is not None else None,
            center and layer_norm and center_weights,
            workspace.allocate,
        )
        state_dict[weight_key] = weight
        if bias_key is not None and bias is not None:
            state_dict[bias_key] = bias


def _check_foldable(cfg: WeightConfig, fold_biases: bool) -> None:
    if cfg.num_experts is not None:
        raise ValueError(
            f"fold_layer_norm does not support mixture-of-experts models yet "
            f"(num_experts={cfg.num_experts}); load without fold_ln to keep the norms"
        )
    if cfg.gated_mlp and cfg.normalization_type == "LN" and fold_biases and not cfg.attn_only:
        raise ValueError(
            "LayerNorm with a gated MLP cannot be folded exactly: ln2's bias reaches W_gate, "
            "which has no bias to absorb it. Use fold_biases=False only if ln2.b is zero, "
            "or load without fold_ln"
        )


def _mlp_targets(cfg: WeightConfig, layer: int) -> FoldTargets:
    mlp = f"blocks.{layer}.mlp"
    targets: list[tuple[str, str | None, bool]] = [(f"{mlp}.W_in", f"{mlp}.b_in", True)]
    if cfg.gated_mlp:
        targets.append((f"{mlp}.W_gate", None, False))
    return targets


def fold_layer_norm(
    state_dict: StateDict,
    cfg: WeightConfig,
    fold_biases: bool = True,
    center_weights: bool = True,
    layers: Sequence[int] | None = None,
    unembed: bool = True,
    workspace: Workspace = AS_IT_IS,
) -> StateDict:
    """Fold ln1, ln2, SoLU's mlp.ln and ln_final into the weights that read them.

    `layers` and `unembed` restrict the fold to part of the model (streamed loading);
    `workspace` says how inputs are read and where folded matrices go.

    LN folds weight and bias and centres the folded weights (not W_gate); RMS only scales.
    LNPre, RMSPre and None have nothing to fold and return a copy.
    """
    result = dict(state_dict)
    if cfg.normalization_type not in _NORMS_WITH_WEIGHTS:
        return result
    _check_foldable(cfg, fold_biases)
    layer_norm = cfg.normalization_type == "LN"
    for layer in _layers(cfg, layers):
        for norm, targets, is_ln in _norms_of_layer(cfg, layer, result):
            _fold_norm(result, norm, targets, is_ln, fold_biases, center_weights, workspace)
    if unembed:
        targets = [("unembed.W_U", "unembed.b_U", True)]
        is_ln = layer_norm and not cfg.final_rms
        _fold_norm(result, "ln_final", targets, is_ln, fold_biases, center_weights, workspace)
    return result


def _norms_of_layer(
    cfg: WeightConfig, layer: int, state_dict: StateDict
) -> list[tuple[str, FoldTargets, bool]]:
    """(norm key, the weights that read it, is it a LayerNorm?) for each norm of a layer:
    ln1 -> Q/K/V, ln2 -> the MLP's input matrices, SoLU's mlp.ln -> W_out."""
    layer_norm = cfg.normalization_type == "LN"
    attn = f"blocks.{layer}.attn"
    w_k, w_v, b_k, b_v = _kv_keys(cfg, layer)
    qkv = [(f"{attn}.W_Q", f"{attn}.b_Q", True), (w_k, b_k, True), (w_v, b_v, True)]
    norms: list[tuple[str, FoldTargets, bool]] = [(f"blocks.{layer}.ln1", qkv, layer_norm)]
    if cfg.attn_only:
        return norms
    norms.append((f"blocks.{layer}.ln2", _mlp_targets(cfg, layer), layer_norm))
    mlp = f"blocks.{layer}.mlp"
    if layer_norm and f"{mlp}.ln.w" in state_dict:
        norms.append((f"{mlp}.ln", [(f"{mlp}.W_out", f"{mlp}.b_out", True)], True))
    return norms


def _center_last(tensor: Float[Tensor, "*rest width"]) -> Float[Tensor, "*rest width"]:
    """Subtract the mean over the last axis."""
    return tensor - tensor.mean(-1, keepdim=True)


def center_writing_weights_skipped(cfg: WeightConfig) -> str | None:
    """Why center_writing_weights does not apply to this config (a warning's text), or None.
    Every entry point (these functions, the loaders' step switches) asks here."""
    if cfg.normalization_type not in ("LN", "LNPre") or cfg.final_rms:
        return (
            "center_writing_weights skipped: it is exact only for LayerNorm models without "
            f"final_rms (normalization_type={cfg.normalization_type!r}, "
            f"final_rms={cfg.final_rms})"
        )
    return None


def center_unembed_skipped(cfg: WeightConfig | None) -> str | None:
    """Why center_unembed does not apply to this config (a warning's text), or None."""
    if cfg is not None and cfg.output_logits_soft_cap > 0:
        return (
            "center_unembed skipped: the logits are soft-capped "
            f"(output_logits_soft_cap={cfg.output_logits_soft_cap}), so shifting them would "
            "change the probabilities"
        )
    return None


def center_writing_weights(
    state_dict: StateDict,
    cfg: WeightConfig,
    layers: Sequence[int] | None = None,
    workspace: Workspace = AS_IT_IS,
) -> StateDict:
    """Remove the d_model mean from everything that writes to the residual stream.

    Exact only when every reader of the residual stream is a LayerNorm (which discards that
    mean anyway): LN or LNPre without final_rms. Otherwise warns and returns a copy unchanged.
    """
    result = dict(state_dict)
    skipped = center_writing_weights_skipped(cfg)
    if skipped is not None:
        warnings.warn(skipped, stacklevel=2)
        return result
    if cfg.num_experts is not None:
        raise ValueError(
            f"center_writing_weights does not support mixture-of-experts models yet "
            f"(num_experts={cfg.num_experts})"
        )
    writers = ["embed.W_E", "pos_embed.W_pos"]
    for layer in _layers(cfg, layers):
        writers += [f"blocks.{layer}.attn.W_O", f"blocks.{layer}.attn.b_O"]
        writers += [f"blocks.{layer}.mlp.W_out", f"blocks.{layer}.mlp.b_out"]
    for key in writers:
        if key in result:
            result[key] = _center_last(workspace.get(result, key))
    return result


def center_unembed(
    state_dict: StateDict, cfg: WeightConfig | None = None, workspace: Workspace = AS_IT_IS
) -> StateDict:
    """Remove the mean over the vocabulary from W_U and b_U.

    This shifts every position's logits by a constant, so log-probs stay the same, unless the
    logits are soft-capped: then (cfg.output_logits_soft_cap > 0) it warns and skips.
    """
    result = dict(state_dict)
    skipped = center_unembed_skipped(cfg)
    if skipped is not None:
        warnings.warn(skipped, stacklevel=2)
        return result
    result["unembed.W_U"] = _center_last(workspace.get(result, "unembed.W_U"))
    if "unembed.b_U" in result:
        result["unembed.b_U"] = _center_last(workspace.get(result, "unembed.b_U"))
    return result


def _value_bias_through_output(
    b_V: Float[Tensor, "kv_head_index d_head"],
    W_O: Float[Tensor, "head_index d_head d_model"],
) -> Float[Tensor, " d_model"]:
    """Σ_h b_V[h // group] @ W_O[h]: what the value bias adds to the attention output."""
    group_size = W_O.shape[0] // b_V.shape[0]
    per_head = b_V.repeat_interleave(group_size, dim=0)  # [head_index, d_head]
    # A vector-matrix product over (head, d_head), which reads W_O where it lies; an einsum
    # first copied it into its own layout (16 MB a layer on Gemma-2b, a fifth of the time a
    # processed layer took to load).
    return per_head.reshape(-1) @ W_O.reshape(-1, W_O.shape[-1])


def fold_value_biases(
    state_dict: StateDict,
    cfg: WeightConfig,
    layers: Sequence[int] | None = None,
    workspace: Workspace = AS_IT_IS,
) -> StateDict:
    """Move b_V into b_O and zero b_V (or `_b_V`), keeping its stored shape.

    Exact because each attention pattern row sums to 1, so every head's output carries
    exactly b_V @ W_O from the value bias. A layer whose b_V is already zero (models without
    value biases) is left as it is: W_O is not read.
    """
    result = dict(state_dict)
    for layer in _layers(cfg, layers):
        b_v_key = _kv_keys(cfg, layer)[3]
        b_V = workspace.get_or_none(result, b_v_key)
        if b_V is None or not b_V.any():
            continue
        W_O = workspace.get(result, f"blocks.{layer}.attn.W_O")
        b_o_key = f"blocks.{layer}.attn.b_O"
        through = _value_bias_through_output(b_V, W_O)
        b_O = workspace.get_or_none(result, b_o_key)
        result[b_o_key] = through if b_O is None else b_O + through
        result[b_v_key] = torch.zeros_like(b_V)
    return result


def _check_refactorable(state_dict: StateDict, cfg: WeightConfig) -> None:
    if cfg.positional_embedding_type == "rotary":
        raise ValueError(
            "refactor_factored_attn_matrices does not support rotary models: rotary mixes "
            "the d_head coordinates by position, so a rotation of W_Q and W_K changes scores"
        )
    n_kv = cfg.n_key_value_heads
    if n_kv is not None and n_kv < cfg.n_heads:
        raise ValueError(
            f"refactor_factored_attn_matrices cannot refactor grouped attention "
            f"(n_heads={cfg.n_heads}, n_key_value_heads={n_kv}): each key/value head is shared "
            "by several query heads, and a per-query-head refactor would need a different "
            "W_K and W_V for each of them, which the grouped layout cannot store"
        )
    if any(key.endswith(("attn.q_norm.w", "attn.k_norm.w")) for key in state_dict):
        raise ValueError("refactor_factored_attn_matrices does not support q/k norms")


def _with_bias_row(
    weight: Float[Tensor, "head_index d_model d_head"],
    bias: Float[Tensor, "head_index d_head"],
) -> Float[Tensor, "head_index d_model_plus_1 d_head"]:
    return torch.cat([weight, bias[:, None, :]], dim=1)


def _pad_head_dim(
    factor: Float[Tensor, "head_index rows rank"], d_head: int
) -> Float[Tensor, "head_index rows d_head"]:
    """Zero-pad the rank axis back to d_head (rank < d_head only when d_model + 1 < d_head)."""
    return torch.nn.functional.pad(factor, (0, d_head - factor.shape[-1]))


def _refactor_qk(state_dict: StateDict, cfg: WeightConfig, layer: int, ws: Workspace) -> None:
    """Rewrite W_Q, b_Q, W_K, b_K so that QK = W_Q W_Kᵀ splits its singular values evenly."""
    attn = f"blocks.{layer}.attn"
    w_k, _, b_k, _ = _kv_keys(cfg, layer)
    W_Q, W_K = ws.get(state_dict, f"{attn}.W_Q"), ws.get(state_dict, w_k)
    b_Q = ws.get_or_none(state_dict, f"{attn}.b_Q")
    b_K = ws.get_or_none(state_dict, b_k)
    b_Q = W_Q.new_zeros(W_Q.shape[0], W_Q.shape[-1]) if b_Q is None else b_Q
    b_K = W_K.new_zeros(W_K.shape[0], W_K.shape[-1]) if b_K is None else b_K
    # The bias is the weight of an input coordinate that is always 1.
    query = _with_bias_row(W_Q, b_Q)
    key = _with_bias_row(W_K, b_K)
    even = FactoredMatrix(query, key.transpose(-2, -1)).make_even()
    query = _pad_head_dim(even.A, cfg.d_head)
    key = _pad_head_dim(even.B.transpose(-2, -1), cfg.d_head)
    state_dict[f"{attn}.W_Q"], state_dict[f"{attn}.b_Q"] = query[:, :-1], query[:, -1]
    state_dict[w_k], state_dict[b_k] = key[:, :-1], key[:, -1]


def _refactor_ov(state_dict: StateDict, cfg: WeightConfig, layer: int, ws: Workspace) -> None:
    """Rewrite W_V, W_O as U·diag(S) and Vhᵀ of OV = W_V W_O (value biases already folded)."""
    attn = f"blocks.{layer}.attn"
    w_v = _kv_keys(cfg, layer)[1]
    W_V, W_O = ws.get(state_dict, w_v), ws.get(state_dict, f"{attn}.W_O")
    U, S, Vh = FactoredMatrix(W_V, W_O).svd()
    state_dict[w_v] = _pad_head_dim(U * S[:, None, :], cfg.d_head)
    state_dict[f"{attn}.W_O"] = _pad_head_dim(Vh, cfg.d_head).transpose(-2, -1)


def refactor_factored_attn_matrices(
    state_dict: StateDict,
    cfg: WeightConfig,
    layers: Sequence[int] | None = None,
    workspace: Workspace = AS_IT_IS,
) -> StateDict:
    """Put each head's QK and OV circuits in SVD form; the attention output is unchanged.

    QK (with the biases as an extra input row) gets √S on each side; OV first moves b_V into
    b_O, then W_V = U·diag(S), W_O = Vhᵀ. Rejects rotary, grouped and q/k-normed attention.
    """
    _check_refactorable(state_dict, cfg)
    result = fold_value_biases(state_dict, cfg, layers, workspace)
    for layer in _layers(cfg, layers):
        _refactor_qk(result, cfg, layer, workspace)
        _refactor_ov(result, cfg, layer, workspace)
    return result


def process_weights(
    state_dict: StateDict,
    cfg: WeightConfig,
    flags: ProcessingFlags = ProcessingFlags(),
    layers: Sequence[int] | None = None,
    unembed: bool = True,
    workspace: Workspace = AS_IT_IS,
) -> StateDict:
    """Run the steps `flags` asks for, in order; returns a new state dict. `layers` and
    `unembed` restrict them to part of the model (all of it by default).

    Folding an LNPre/RMSPre config is a no-op (already folded). center_writing_weights is
    skipped with a warning unless the model is LN-family without final_rms; center_unembed is
    skipped with a warning under a logit soft cap (`flags.that_apply(cfg)` turns them off
    first, warning once).
    """
    result = dict(state_dict)
    if flags.fold_ln:
        result = fold_layer_norm(result, cfg, layers=layers, unembed=unembed, workspace=workspace)
    if flags.center_writing_weights:
        result = center_writing_weights(result, cfg, layers, workspace)
    if flags.center_unembed and unembed:
        result = center_unembed(result, cfg, workspace)
    if flags.fold_value_biases:
        result = fold_value_biases(result, cfg, layers, workspace)
    if flags.refactor_factored_attn_matrices:
        result = refactor_factored_attn_matrices(result, cfg, layers, workspace)
    return result
