"""Small tensor and debugging helpers of `transformer_lens.utils`: matrix structure checks,
cumulative sums, per-head copies of the residual stream, GPU memory and the MPS warning."""

import os
import warnings

import torch
from jaxtyping import Float
from torch import Tensor


def is_square(x: Tensor) -> bool:
    """Whether `x` is a 2-D matrix with as many rows as columns."""
    return x.ndim == 2 and x.shape[0] == x.shape[1]


def is_lower_triangular(x: Tensor) -> bool:
    """Whether `x` is square and has only zeros above the diagonal."""
    return is_square(x) and x.equal(x.tril())


def check_structure(t1: Tensor, t2: Tensor, *, verbose: bool = False) -> None:
    """Print whether two matrices order their entries alike: for every pair of adjacent rows
    (and of adjacent columns), `t1[i] >= t1[i + 1]` must equal `t2[i] >= t2[i + 1]`
    elementwise. Prints "PASSED", or the indices of the first row/column of each pair that
    differs. A debugging aid; its printout is the point, hence print rather than logging.
    """
    if t1.ndim != 2 or t1.shape != t2.shape:
        raise ValueError(
            f"check_structure needs two matrices of one shape, got {tuple(t1.shape)} and "
            f"{tuple(t2.shape)}"
        )
    row_mismatch = _order_mismatches(t1, t2, "rows", verbose)
    col_mismatch = _order_mismatches(t1.T, t2.T, "columns", verbose)
    if not row_mismatch and not col_mismatch:
        print("PASSED")
    if row_mismatch:
        print(f"row mismatch: {row_mismatch}")
    if col_mismatch:
        print(f"column mismatch: {col_mismatch}")


def _order_mismatches(t1: Tensor, t2: Tensor, what: str, verbose: bool) -> list[int]:
    """Indices i where t1[i] >= t1[i + 1] and t2[i] >= t2[i + 1] differ anywhere."""
    if verbose:
        print(f"Checking {what}")
    mismatches = []
    for i in range(t1.shape[0] - 1):
        order1, order2 = t1[i].ge(t1[i + 1]), t2[i].ge(t2[i + 1])
        if not order1.equal(order2):
            mismatches.append(i)
            if verbose:
                print(f"\t{what} {i}:{i + 1}\n\tt1: {order1.tolist()}\n\tt2: {order2.tolist()}")
    return mismatches


def get_cumsum_along_dim(tensor: Tensor, dim: int, reverse: bool = False) -> Tensor:
    """Cumulative sum along `dim`; with reverse, summed from the end (suffix sums)."""
    if not reverse:
        return tensor.cumsum(dim=dim)
    return tensor.flip(dims=(dim,)).cumsum(dim=dim).flip(dims=(dim,))


def repeat_along_head_dimension(
    tensor: Float[Tensor, "batch pos d_model"], n_heads: int, clone_tensor: bool = True
) -> Float[Tensor, "batch pos head_index d_model"]:
    """One copy of `tensor` per head, on a new axis 2. Without clone_tensor the copies are a
    broadcast view sharing one storage, so an in-place edit of one head edits them all."""
    repeated = tensor.unsqueeze(2).expand(-1, -1, n_heads, -1)
    return repeated.clone() if clone_tensor else repeated


def print_gpu_mem(step_name: str = "") -> None:
    """Print the GPU memory torch has allocated, in GiB, after `step_name`."""
    # Classic divided by 2e30 instead of 2**30 and so always printed 0.0.
    gib = torch.cuda.memory_allocated() / 2**30
    print(f"{step_name} ~ {gib:.2f} GiB allocated on GPU.")


_mps_warned = False


def warn_if_mps(device: torch.device | str | None) -> None:
    """Warn once per process when `device` is MPS: PyTorch's MPS backend has given silently
    wrong results for some TransformerLens operations
    (https://github.com/TransformerLensOrg/TransformerLens/issues/1178).
    Setting TRANSFORMERLENS_ALLOW_MPS=1 silences it."""
    global _mps_warned
    device_type = device.type if isinstance(device, torch.device) else str(device).split(":")[0]
    if _mps_warned or device_type != "mps" or os.environ.get("TRANSFORMERLENS_ALLOW_MPS") == "1":
        return
    _mps_warned = True
    warnings.warn(
        f"The MPS backend may give silently incorrect results (PyTorch {torch.__version__}); "
        "set TRANSFORMERLENS_ALLOW_MPS=1 to silence this warning. See "
        "https://github.com/TransformerLensOrg/TransformerLens/issues/1178",
        UserWarning,
        stacklevel=2,
    )
