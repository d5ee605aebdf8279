"""Weight processing: pure functions from a state dict to a new state dict.

Every step keeps the model's log-probabilities (API.md §8); `center_unembed` shifts each
position's logits by a constant. No step mutates its input dict or tensors: each works on a
shallow copy and replaces the entries it changes. Keys a step does not know (buffers, Gemma-2
post norms, q/k norms) pass through untouched.

Order: fold_layer_norm → center_writing_weights → center_unembed → fold_value_biases →
refactor_factored_attn_matrices. After `fold_layer_norm` the caller switches the config from
LN to LNPre (RMS to RMSPre).
"""

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol, runtime_checkable

import torch
from jaxtyping import Float
from torch import Tensor

from transformer_lens.FactoredMatrix import FactoredMatrix

StateDict = dict[str, Tensor]
# (weight key, bias key or None, centre the folded weight?)
FoldTargets = Sequence[tuple[str, str | None, bool]]

_NORMS_WITH_WEIGHTS = ("LN", "RMS")

# Makes an uninitialised tensor of like's shape and layout in the given dtype.
Allocate = Callable[[Tensor, torch.dtype], Tensor]
_folded_weights_in: ContextVar[Allocate | None] = ContextVar("_folded_weights_in", default=None)


@contextmanager
def folded_weights_in(allocate: Allocate) -> Iterator[None]:
    """While active, each folded weight matrix is written into a tensor from `allocate`
    instead of a new one (a streamed load reuses memory from layer to layer). The caller
    owns those tensors: it must copy the results out before handing the memory out again.
    Without autograd only (`out=` does not record gradients)."""
    token = _folded_weights_in.set(allocate)
    try:
        yield
    finally:
        _folded_weights_in.reset(token)


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
) -> tuple[Float[Tensor, "*heads d_in d_out"], Float[Tensor, "*heads d_out"] | None]:
    """Fold `x ↦ norm_w·x + norm_b` into the linear map `x ↦ x @ weight + bias` that reads it."""
    if norm_b is not None:
        # Σ_i norm_b[i]·weight[..., i, :] as a vector-matrix product: no weight-sized temporary
        through = norm_b @ weight
        bias = through if bias is None else bias + through
    allocate = _folded_weights_in.get()
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
) -> None:
    """Fold the norm stored under `norm` into `targets` (weight key, bias key, centre it?).

    Works in place on the caller's fresh copy; the folded norm keys are removed.
    """
    if f"{norm}.w" not in state_dict:
        raise ValueError(f"{norm}.w is missing: is this state dict already folded?")
    norm_w = state_dict.pop(f"{norm}.w")
    norm_b = state_dict.pop(f"{norm}.b", None) if layer_norm and fold_biases else None
    for weight_key, bias_key, center in targets:
        bias = state_dict.get(bias_key) if bias_key is not None else None
        weight, bias = _fold_norm_into(
            state_dict[weight_key],
            bias,
            norm_w,
            norm_b if bias_key is not None else None,
            center and layer_norm and center_weights,
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
) -> StateDict:
    """Fold ln1, ln2, SoLU's mlp.ln and ln_final into the weights that read them.

    `layers` and `unembed` restrict the fold to part of the model (streamed loading).

    LN folds weight and bias and centres the folded weights (not W_gate); RMS only scales.
    LNPre, RMSPre and None have nothing to fold and return a copy.
    """
    result = dict(state_dict)
    if cfg.normalization_type not in _NORMS_WITH_WEIGHTS:
        return result
    _check_foldable(cfg, fold_biases)
    layer_norm = cfg.normalization_type == "LN"
    for layer in _layers(cfg, layers):
        attn = f"blocks.{layer}.attn"
        w_k, w_v, b_k, b_v = _kv_keys(cfg, layer)
        qkv = [(f"{attn}.W_Q", f"{attn}.b_Q", True), (w_k, b_k, True), (w_v, b_v, True)]
        _fold_norm(result, f"blocks.{layer}.ln1", qkv, layer_norm, fold_biases, center_weights)
        if cfg.attn_only:
            continue
        mlp_in = _mlp_targets(cfg, layer)
        _fold_norm(result, f"blocks.{layer}.ln2", mlp_in, layer_norm, fold_biases, center_weights)
        if layer_norm and f"blocks.{layer}.mlp.ln.w" in result:
            w_out = [(f"blocks.{layer}.mlp.W_out", f"blocks.{layer}.mlp.b_out", True)]
            _fold_norm(result, f"blocks.{layer}.mlp.ln", w_out, True, fold_biases, center_weights)
    if unembed:
        final_layer_norm = layer_norm and not cfg.final_rms
        targets = [("unembed.W_U", "unembed.b_U", True)]
        _fold_norm(result, "ln_final", targets, final_layer_norm, fold_biases, center_weights)
    return result


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
    state_dict: StateDict, cfg: WeightConfig, layers: Sequence[int] | None = None
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
            result[key] = _center_last(result[key])
    return result


def center_unembed(state_dict: StateDict, cfg: WeightConfig | None = None) -> StateDict:
    """Remove the mean over the vocabulary from W_U and b_U.

    This shifts every position's logits by a constant, so log-probs stay the same, unless the
    logits are soft-capped: then (cfg.output_logits_soft_cap > 0) it warns and skips.
    """
    result = dict(state_dict)
    skipped = center_unembed_skipped(cfg)
    if skipped is not None:
        warnings.warn(skipped, stacklevel=2)
        return result
    result["unembed.W_U"] = _center_last(result["unembed.W_U"])
    if "unembed.b_U" in result:
        result["unembed.b_U"] = _center_last(result["unembed.b_U"])
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
    state_dict: StateDict, cfg: WeightConfig, layers: Sequence[int] | None = None
) -> StateDict:
    """Move b_V into b_O and zero b_V (or `_b_V`), keeping its stored shape.

    Exact because each attention pattern row sums to 1, so every head's output carries
    exactly b_V @ W_O from the value bias. A layer whose b_V is already zero (models without
    value biases) is left as it is: W_O is not read.
    """
    result = dict(state_dict)
    for layer in _layers(cfg, layers):
        b_v_key = _kv_keys(cfg, layer)[3]
        if b_v_key not in result or not result[b_v_key].any():
            continue
        b_V, W_O = result[b_v_key], result[f"blocks.{layer}.attn.W_O"]
        b_o_key = f"blocks.{layer}.attn.b_O"
        through = _value_bias_through_output(b_V, W_O)
        b_O = result.get(b_o_key)
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


def _refactor_qk(state_dict: StateDict, cfg: WeightConfig, layer: int) -> None:
    """Rewrite W_Q, b_Q, W_K, b_K so that QK = W_Q W_Kᵀ splits its singular values evenly."""
    attn = f"blocks.{layer}.attn"
    w_k, _, b_k, _ = _kv_keys(cfg, layer)
    W_Q, W_K = state_dict[f"{attn}.W_Q"], state_dict[w_k]
    b_Q = state_dict.get(f"{attn}.b_Q", W_Q.new_zeros(W_Q.shape[0], W_Q.shape[-1]))
    b_K = state_dict.get(b_k, W_K.new_zeros(W_K.shape[0], W_K.shape[-1]))
    # The bias is the weight of an input coordinate that is always 1.
    query = _with_bias_row(W_Q, b_Q)
    key = _with_bias_row(W_K, b_K)
    even = FactoredMatrix(query, key.transpose(-2, -1)).make_even()
    query = _pad_head_dim(even.A, cfg.d_head)
    key = _pad_head_dim(even.B.transpose(-2, -1), cfg.d_head)
    state_dict[f"{attn}.W_Q"], state_dict[f"{attn}.b_Q"] = query[:, :-1], query[:, -1]
    state_dict[w_k], state_dict[b_k] = key[:, :-1], key[:, -1]


def _refactor_ov(state_dict: StateDict, cfg: WeightConfig, layer: int) -> None:
    """Rewrite W_V, W_O as U·diag(S) and Vhᵀ of OV = W_V W_O (value biases already folded)."""
    attn = f"blocks.{layer}.attn"
    w_v = _kv_keys(cfg, layer)[1]
    U, S, Vh = FactoredMatrix(state_dict[w_v], state_dict[f"{attn}.W_O"]).svd()
    state_dict[w_v] = _pad_head_dim(U * S[:, None, :], cfg.d_head)
    state_dict[f"{attn}.W_O"] = _pad_head_dim(Vh, cfg.d_head).transpose(-2, -1)


def refactor_factored_attn_matrices(
    state_dict: StateDict, cfg: WeightConfig, layers: Sequence[int] | None = None
) -> StateDict:
    """Put each head's QK and OV circuits in SVD form; the attention output is unchanged.

    QK (with the biases as an extra input row) gets √S on each side; OV first moves b_V into
    b_O, then W_V = U·diag(S), W_O = Vhᵀ. Rejects rotary, grouped and q/k-normed attention.
    """
    _check_refactorable(state_dict, cfg)
    result = fold_value_biases(state_dict, cfg, layers)
    for layer in _layers(cfg, layers):
        _refactor_qk(result, cfg, layer)
        _refactor_ov(result, cfg, layer)
    return result


_center_writing_weights = center_writing_weights
_center_unembed = center_unembed
_fold_value_biases = fold_value_biases
_refactor_factored_attn_matrices = refactor_factored_attn_matrices


def process_weights(
    state_dict: StateDict,
    cfg: WeightConfig,
    fold_ln: bool = True,
    center_writing_weights: bool = True,
    center_unembed: bool = True,
    fold_value_biases: bool = True,
    refactor_factored_attn_matrices: bool = False,
    layers: Sequence[int] | None = None,
    unembed: bool = True,
) -> StateDict:
    """Run the requested steps in order; returns a new state dict.

    Folding an LNPre/RMSPre config is a no-op (already folded). center_writing_weights is
    skipped with a warning unless the model is LN-family without final_rms; center_unembed is
    skipped with a warning under a logit soft cap.
    """
    result = dict(state_dict)
    if fold_ln:
        result = fold_layer_norm(result, cfg, layers=layers, unembed=unembed)
    if center_writing_weights:
        result = _center_writing_weights(result, cfg, layers)
    if center_unembed and unembed:
        result = _center_unembed(result, cfg)
    if fold_value_biases:
        result = _fold_value_biases(result, cfg, layers)
    if refactor_factored_attn_matrices:
        result = _refactor_factored_attn_matrices(result, cfg, layers)
    return result
