"""Public helpers: hook-name shorthand, slicing, losses, sampling and small tensor tools, plus
classic's other helpers, re-exported from the private `_utils_*` modules that hold them."""

import math
import re
from typing import Any, Literal, Union

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from transformer_lens._utils_data import get_dataset as get_dataset
from transformer_lens._utils_data import keep_single_column as keep_single_column
from transformer_lens._utils_data import tokenize_and_concatenate as tokenize_and_concatenate
from transformer_lens._utils_defaults import USE_DEFAULT_VALUE as USE_DEFAULT_VALUE
from transformer_lens._utils_defaults import LocallyOverridenDefaults as LocallyOverridenDefaults
from transformer_lens._utils_defaults import get_nested_attr as get_nested_attr
from transformer_lens._utils_defaults import (
    override_or_use_default_value as override_or_use_default_value,
)
from transformer_lens._utils_defaults import set_nested_attr as set_nested_attr
from transformer_lens._utils_hub import CACHE_DIR as CACHE_DIR
from transformer_lens._utils_hub import clear_huggingface_cache as clear_huggingface_cache
from transformer_lens._utils_hub import download_file_from_hf as download_file_from_hf
from transformer_lens._utils_hub import is_library_available as is_library_available
from transformer_lens._utils_hub import select_compatible_kwargs as select_compatible_kwargs
from transformer_lens._utils_init import calc_fan_in_and_fan_out as calc_fan_in_and_fan_out
from transformer_lens._utils_init import init_kaiming_normal_ as init_kaiming_normal_
from transformer_lens._utils_init import init_kaiming_uniform_ as init_kaiming_uniform_
from transformer_lens._utils_init import init_xavier_normal_ as init_xavier_normal_
from transformer_lens._utils_init import init_xavier_uniform_ as init_xavier_uniform_
from transformer_lens._utils_prompt import test_prompt as test_prompt
from transformer_lens._utils_tensors import check_structure as check_structure
from transformer_lens._utils_tensors import get_cumsum_along_dim as get_cumsum_along_dim
from transformer_lens._utils_tensors import is_lower_triangular as is_lower_triangular
from transformer_lens._utils_tensors import is_square as is_square
from transformer_lens._utils_tensors import print_gpu_mem as print_gpu_mem
from transformer_lens._utils_tensors import (
    repeat_along_head_dimension as repeat_along_head_dimension,
)
from transformer_lens._utils_tensors import warn_if_mps as warn_if_mps
from transformer_lens._utils_tokens import get_attention_mask as get_attention_mask
from transformer_lens._utils_tokens import (
    get_input_with_manually_prepended_bos as get_input_with_manually_prepended_bos,
)
from transformer_lens._utils_tokens import get_offset_position_ids as get_offset_position_ids
from transformer_lens._utils_tokens import get_tokenizer_with_bos as get_tokenizer_with_bos
from transformer_lens._utils_tokens import (
    get_tokens_with_bos_removed as get_tokens_with_bos_removed,
)
from transformer_lens.activation_functions import gelu_fast as gelu_fast
from transformer_lens.activation_functions import gelu_new as gelu_new
from transformer_lens.activation_functions import gelu_pytorch_tanh as gelu_pytorch_tanh
from transformer_lens.activation_functions import solu as solu
from transformer_lens.activation_functions import xielu as xielu
from transformer_lens.FactoredMatrix import FactoredMatrix
from transformer_lens.utilities.activation_functions import SUPPORTED_ACTIVATIONS

ACTIVATION_FN_DICT = SUPPORTED_ACTIVATIONS
"""act_fn name -> activation function (the table of `transformer_lens.utilities`)."""

AttentionMask = Int[Tensor, "batch pos"] | Bool[Tensor, "batch pos"]

# ---------------------------------------------------------------------------- hook names

_NAME_ALIASES = {
    "attn": "pattern",
    "attn_logits": "attn_scores",
    "key": "k",
    "query": "q",
    "value": "v",
    "mlp_pre": "pre",
    "mlp_mid": "mid",
    "mlp_post": "post",
}
_LAYER_TYPE_ALIASES = {
    "a": "attn",
    "attention": "attn",
    "m": "mlp",
    "b": "",
    "block": "",
    "blocks": "",
}
_ATTENTION_HOOKS = frozenset(
    {"q", "k", "v", "z", "rot_q", "rot_k", "result", "pattern", "attn_scores"}
)
_MLP_HOOKS = frozenset({"pre", "mid", "post", "pre_linear"})
_NORM_HOOKS = frozenset({"scale", "normalized"})
# "k6" -> ("k", "6", ""), "scale4ln1" -> ("scale", "4", "ln1"), "resid_pre10" -> ("resid_pre", "10", "")
_SHORTHAND = re.compile(r"([a-z_]*[a-z])(\d+)([a-z]*\d*)")


def get_act_name(name: str, layer: int | None = None, layer_type: str | None = None) -> str:
    """Expand a short activation name to its full hook name.

    Full names (containing "." or starting with "hook_") pass through unchanged. Otherwise
    `get_act_name("k", 6)`, `get_act_name("k6")` and `get_act_name("key", 6)` all give
    "blocks.6.attn.hook_k"; `get_act_name("scale", 4, "ln1")` and "scale4ln1" give
    "blocks.4.ln1.hook_scale"; "scale" without a layer gives "ln_final.hook_scale".
    Unknown names map to "blocks.{layer}.hook_{name}"; the model's hook lookup rejects them.
    """
    if ("." in name or name.startswith("hook_")) and layer is None and layer_type is None:
        return name
    if layer is None:
        match = _SHORTHAND.fullmatch(name)
        if match is not None:
            name, layer_digits, suffix = match.groups()
            layer = int(layer_digits)
            layer_type = suffix or layer_type
    name = name.removeprefix("hook_")
    name = _NAME_ALIASES.get(name, name)
    if name in _ATTENTION_HOOKS:
        layer_type = "attn"
    elif name in _MLP_HOOKS:
        layer_type = "mlp"
    elif layer_type is not None:
        layer_type = _LAYER_TYPE_ALIASES.get(layer_type, layer_type)
    elif layer is None and name in _NORM_HOOKS:
        layer_type = "ln_final"
    parts = [] if layer is None else [f"blocks.{layer}"]
    if layer_type:
        parts.append(layer_type)
    parts.append(f"hook_{name}")
    return ".".join(parts)


# ---------------------------------------------------------------------------- slicing

SliceInput = (
    None
    | int
    | np.integer
    | tuple[int | None, ...]
    | slice
    | list[int]
    | np.ndarray
    | Int[Tensor, "*index"]
)
"""What `Slice` accepts: an int, a (start, stop[, step]) tuple, a slice, an index list,
array or tensor, or None for everything."""


class Slice:
    """An index along one tensor axis, as accepted by the cache's `pos_slice` arguments.

    `Slice(i).apply(t, dim)` drops the axis for an int i; a tuple becomes `slice(*t)`;
    a list, array or tensor gathers those indices; None keeps the whole axis.
    `.mode` is "int", "slice" or "array"; `.slice` holds the int, slice or index tensor.
    """

    def __init__(self, input_slice: Union[SliceInput, "Slice"] = None):
        self.slice: int | slice | Tensor
        self.mode: Literal["int", "slice", "array"]
        if isinstance(input_slice, Slice):
            self.slice, self.mode = input_slice.slice, input_slice.mode
        elif isinstance(input_slice, int):
            self.slice, self.mode = input_slice, "int"
        elif input_slice is None:
            self.slice, self.mode = slice(None), "slice"
        elif isinstance(input_slice, slice):
            self.slice, self.mode = input_slice, "slice"
        elif isinstance(input_slice, tuple):
            self.slice, self.mode = slice(*input_slice), "slice"
        else:
            index = torch.as_tensor(input_slice).detach().cpu().long()
            if index.ndim == 0:
                # A 0-d tensor or a numpy scalar names one position, like the int it holds;
                # classic accepted these too and dropped the axis.
                self.slice, self.mode = int(index), "int"
            elif index.ndim == 1:
                self.slice, self.mode = index, "array"
            else:
                raise ValueError(
                    f"An index array for Slice must be 0-D or 1-D, got shape {tuple(index.shape)}"
                )

    def __repr__(self) -> str:
        return f"Slice({self.slice!r})"

    def apply(self, tensor: Tensor, dim: int = 0) -> Tensor:
        """Index `tensor` along `dim`; an int drops that axis."""
        if not -tensor.ndim <= dim < tensor.ndim:
            raise ValueError(f"dim {dim} is out of range for a tensor of shape {tensor.shape}")
        dim %= tensor.ndim
        if isinstance(self.slice, int):
            return tensor.select(dim, self.slice)
        if isinstance(self.slice, Tensor):
            index = self.slice.to(tensor.device)
            # index_select rejects negative indices, which plain indexing accepts.
            index = torch.where(index < 0, index + tensor.shape[dim], index)
            return tensor.index_select(dim, index)
        return tensor[(slice(None),) * dim + (self.slice,)]

    def indices(self, max_ctx: int | None = None) -> np.ndarray:
        """The selected indices as a 1-D array; a slice needs `max_ctx`, the axis length."""
        if max_ctx is not None:
            return np.atleast_1d(np.arange(max_ctx)[self._numpy_index()])
        if isinstance(self.slice, slice):
            raise ValueError(f"{self!r} needs max_ctx to list its indices")
        if isinstance(self.slice, Tensor):
            return self.slice.numpy()
        return np.array([self.slice])

    def _numpy_index(self) -> int | slice | np.ndarray:
        return self.slice.numpy() if isinstance(self.slice, Tensor) else self.slice

    @staticmethod
    def unwrap(slice_input: Union[SliceInput, "Slice"]) -> "Slice":
        """Make a Slice for run_with_cache's pos_slice, where an int keeps its axis."""
        if isinstance(slice_input, Slice):
            return slice_input
        if isinstance(slice_input, int):
            stop = slice_input + 1
            return Slice(slice(slice_input, stop if stop != 0 else None))
        return Slice(slice_input)


# ---------------------------------------------------------------------------- losses


def lm_cross_entropy_loss(
    logits: Float[Tensor, "batch pos d_vocab"],
    tokens: Int[Tensor, "batch pos"],
    attention_mask: AttentionMask | None = None,
    per_token: bool = False,
) -> Float[Tensor, ""] | Float[Tensor, "batch pos-1"]:
    """Next-token cross-entropy, computed in float32.

    A prediction counts only when both the token it reads and the token it predicts are
    unmasked. per_token gives [batch, pos-1] with masked positions set to 0; otherwise the
    mean over the counted positions.
    """
    log_probs = F.log_softmax(logits.float(), dim=-1)
    # The logits at position i predict the token at position i + 1.
    predicted = log_probs[:, :-1].gather(dim=-1, index=tokens[:, 1:, None].long())[..., 0]
    if attention_mask is None:
        return -predicted if per_token else -predicted.mean()
    counted = attention_mask[:, :-1].bool() & attention_mask[:, 1:].bool()
    predicted = torch.where(counted, predicted, torch.zeros_like(predicted))
    if per_token:
        return -predicted
    return -predicted.sum() / counted.sum()


def lm_accuracy(
    logits: Float[Tensor, "batch pos d_vocab"],
    tokens: Int[Tensor, "batch pos"],
    per_token: bool = False,
) -> Float[Tensor, ""] | Bool[Tensor, "batch pos-1"]:
    """How often the top logit at position i is the token at i + 1 (per position, or the mean)."""
    correct = logits[:, :-1].argmax(dim=-1) == tokens[:, 1:]
    return correct if per_token else correct.float().mean()


# ---------------------------------------------------------------------------- sampling


def sample_logits(
    final_logits: Float[Tensor, "batch d_vocab"],
    top_k: int | None = None,
    top_p: float | None = None,
    temperature: float = 1.0,
    freq_penalty: float = 0.0,
    tokens: Int[Tensor, "batch pos"] | None = None,
) -> Int[Tensor, " batch"]:
    """Sample one token per row.

    Temperature 0 is greedy: the argmax of the raw logits (no penalty or filtering). Otherwise
    the logits are divided by the temperature, each token loses freq_penalty times its count
    in `tokens`, then top_k and top_p filtering (both, when both are given) precede sampling.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0.0:
        return final_logits.argmax(dim=-1)
    logits = final_logits.float() / temperature
    if freq_penalty != 0.0:
        if tokens is None:
            raise ValueError("freq_penalty needs `tokens`, the tokens generated so far")
        logits = logits - freq_penalty * _token_counts(tokens, logits.shape[-1])
    if top_k is not None:
        logits = _keep_top_k(logits, top_k)
    if top_p is not None:
        logits = _keep_top_p(logits, top_p)
    return torch.distributions.Categorical(logits=logits).sample()


def _token_counts(tokens: Int[Tensor, "batch pos"], d_vocab: int) -> Float[Tensor, "batch d_vocab"]:
    counts = torch.zeros(tokens.shape[0], d_vocab, device=tokens.device)
    return counts.scatter_add_(1, tokens.long(), torch.ones_like(tokens, dtype=counts.dtype))


def _keep_top_k(
    logits: Float[Tensor, "batch d_vocab"], top_k: int
) -> Float[Tensor, "batch d_vocab"]:
    if top_k <= 0:
        raise ValueError(f"top_k must be positive, got {top_k}")
    threshold = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < threshold, -math.inf)


def _keep_top_p(
    logits: Float[Tensor, "batch d_vocab"], top_p: float
) -> Float[Tensor, "batch d_vocab"]:
    """Keep the smallest set of most likely tokens whose probabilities reach top_p."""
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    sorted_probs = sorted_logits.softmax(dim=-1)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    remove = (mass_before >= top_p).scatter(-1, order, mass_before >= top_p)
    return logits.masked_fill(remove, -math.inf)


# ---------------------------------------------------------------------------- tensor tools


def to_numpy(tensor: Tensor | np.ndarray | list | tuple | int | float | bool | str) -> np.ndarray:
    """Convert a tensor, array, (nested) list, number or string to a numpy array."""
    if isinstance(tensor, Tensor):
        tensor = tensor.detach().cpu()
        # numpy has no bfloat16.
        return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
    if isinstance(tensor, np.ndarray):
        return tensor
    if isinstance(tensor, list | tuple | int | float | bool | str):
        return np.array(tensor)
    raise ValueError(f"Cannot convert {type(tensor).__name__} to a numpy array")


def get_device() -> torch.device:
    """The best available device: cuda, then mps (torch >= 2 only), then cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    torch_major = int(torch.__version__.split(".")[0])
    if torch_major >= 2 and torch.backends.mps.is_available() and torch.backends.mps.is_built():
        return torch.device("mps")
    return torch.device("cpu")


def remove_batch_dim(tensor: Tensor) -> Tensor:
    """Drop a leading batch axis of size 1; other tensors come back unchanged."""
    return tensor.squeeze(0) if tensor.ndim > 0 and tensor.shape[0] == 1 else tensor


def transpose(tensor: Tensor) -> Tensor:
    """Swap the last two axes."""
    return tensor.transpose(-2, -1)


def composition_scores(
    left: FactoredMatrix, right: FactoredMatrix, broadcast_dims: bool = True
) -> Tensor:
    """||left @ right||_F / (||left||_F ||right||_F) for the matrices `left` [..., a, b] and
    `right` [..., b, c]. With broadcast_dims the leading dims of both are kept separately:
    [*left_leading, *right_leading]; otherwise they broadcast against each other.

    Frobenius norms come from the small Gram matrices of the factors, so no full
    [a, c] product and no SVD is formed."""
    if left.rdim != right.ldim:
        raise ValueError(f"Cannot compose {tuple(left.shape)} with {tuple(right.shape)}")
    left_A, left_B, right_A, right_B = left.A, left.B, right.A, right.B
    if broadcast_dims:
        n_left, n_right = left.ndim - 2, right.ndim - 2
        left_A, left_B = (
            t.reshape(*t.shape[:-2], *[1] * n_right, *t.shape[-2:]) for t in left.pair
        )
        right_A, right_B = (t.reshape(*[1] * n_left, *t.shape) for t in right.pair)
    # ||A M B||_F^2 = tr(A^T A  M  B B^T  M^T), with M = left.B @ right.A.
    left_gram = left_A.transpose(-2, -1) @ left_A
    right_gram = right_B @ right_B.transpose(-2, -1)
    middle = left_B @ right_A
    product_sq = ((left_gram @ middle @ right_gram) * middle).sum((-2, -1))
    left_sq = (left_gram * (left_B @ left_B.transpose(-2, -1))).sum((-2, -1))
    right_sq = (right_gram * (right_A.transpose(-2, -1) @ right_A)).sum((-2, -1))
    return product_sq.clamp(min=0).sqrt() / (left_sq * right_sq).clamp(min=0).sqrt()


def get_corner(tensor: Any, n: int = 3) -> Any:
    """The top-left n x n x ... corner of a tensor, or of a FactoredMatrix via its get_corner."""
    if not isinstance(tensor, Tensor):
        return tensor.get_corner(n)
    return tensor[tuple(slice(n) for _ in tensor.shape)]
