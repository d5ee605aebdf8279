"""A low-rank matrix kept as the product of two factors, `AB = A @ B`.

Interpretability works with products such as `W_Q @ W_K.T` ([d_model, d_model]) whose rank is
only d_head. Keeping the factors makes products, norms, SVDs and eigenvalues cheap: every
operation here works on the factors and never forms the full matrix unless asked (`AB`).

Shapes: `A [..., ldim, mdim]`, `B [..., mdim, rdim]`; the leading dims broadcast.
Products stay factored across the narrowest inner dimension available, with the same factors
classic TransformerLens picks, so `.A`, `.B` and `.mdim` of a product match it.
"""

from __future__ import annotations

from functools import cached_property
from types import EllipsisType

import torch
from jaxtyping import Float
from torch import Tensor

from transformer_lens._errors import ClassicAssertionError, ClassicIndexError

IndexEntry = int | slice | list[int] | Tensor | EllipsisType | None


class FactoredMatrix:
    """The matrix `A @ B`, stored as its two factors."""

    def __init__(self, A: Float[Tensor, "... ldim mdim"], B: Float[Tensor, "... mdim rdim"]):
        if A.ndim < 2 or B.ndim < 2 or A.shape[-1] != B.shape[-2]:
            raise ClassicAssertionError(
                f"FactoredMatrix needs A [..., ldim, mdim] and B [..., mdim, rdim]; "
                f"got A {tuple(A.shape)} and B {tuple(B.shape)}"
            )
        self.ldim = A.shape[-2]
        self.mdim = A.shape[-1]
        self.rdim = B.shape[-1]
        leading = torch.broadcast_shapes(A.shape[:-2], B.shape[:-2])
        self.has_leading_dims = len(leading) > 0
        self.shape = torch.Size((*leading, self.ldim, self.rdim))
        self.A = A.broadcast_to((*leading, self.ldim, self.mdim))
        self.B = B.broadcast_to((*leading, self.mdim, self.rdim))

    @property
    def ndim(self) -> int:
        """Number of dims of the represented matrix: leading dims + 2."""
        return len(self.shape)

    @property
    def pair(self) -> tuple[Float[Tensor, "... ldim mdim"], Float[Tensor, "... mdim rdim"]]:
        """The factors (A, B), broadcast to the common leading dims."""
        return self.A, self.B

    @property
    def AB(self) -> Float[Tensor, "... ldim rdim"]:
        """The full matrix."""
        return self.A @ self.B

    @property
    def BA(self) -> Float[Tensor, "... mdim mdim"]:
        """The factors multiplied the other way round; needs a square matrix."""
        if self.ldim != self.rdim:
            raise ClassicAssertionError(
                f"BA needs ldim == rdim; got ldim {self.ldim}, rdim {self.rdim}"
            )
        return self.B @ self.A

    @property
    def T(self) -> FactoredMatrix:
        """The transpose [..., rdim, ldim], as factors (Bᵀ, Aᵀ)."""
        return FactoredMatrix(self.B.transpose(-2, -1), self.A.transpose(-2, -1))

    def __matmul__(
        self, other: Float[Tensor, "*other_shape"] | FactoredMatrix
    ) -> FactoredMatrix | Float[Tensor, "*result_shape"]:
        if isinstance(other, FactoredMatrix):
            # Two steps, each keeping the narrower inner dimension, so the result's inner
            # dimension is min(mdim, rdim, other.mdim), with classic TransformerLens's factors.
            return self._times_matrix(other.A)._times_matrix(other.B)
        if other.ndim == 1:
            self._check_inner("right", other.shape[0], self.rdim, other)
            return (self.A @ (self.B @ other.unsqueeze(-1))).squeeze(-1)
        return self._times_matrix(other)

    def __rmatmul__(
        self, other: Float[Tensor, "*other_shape"]
    ) -> FactoredMatrix | Float[Tensor, "*result_shape"]:
        self._check_inner("left", other.shape[-1], self.ldim, other)
        if other.ndim == 1:
            return ((other @ self.A).unsqueeze(-2) @ self.B).squeeze(-2)
        # Factor across the narrower of mdim and ldim: (other @ A, B) keeps mdim, (other, AB)
        # keeps ldim. A tie goes to (other, AB), as in classic TransformerLens.
        if self.ldim > self.mdim:
            return FactoredMatrix(other @ self.A, self.B)
        return FactoredMatrix(other, self.AB)

    def _times_matrix(self, other: Float[Tensor, "... rdim new_rdim"]) -> FactoredMatrix:
        """self @ other, factored across min(mdim, rdim); ties go to (AB, other) as in
        classic TransformerLens, so .A and .B match it."""
        self._check_inner("right", other.shape[-2], self.rdim, other)
        if self.rdim > self.mdim:
            return FactoredMatrix(self.A, self.B @ other)
        return FactoredMatrix(self.AB, other)

    def _check_inner(self, side: str, other_dim: int, own_dim: int, other: Tensor) -> None:
        if other_dim != own_dim:
            raise ClassicAssertionError(
                f"matmul dimension mismatch: the {side}-hand tensor of shape "
                f"{tuple(other.shape)} does not meet the FactoredMatrix of shape "
                f"{tuple(self.shape)} on a dimension of size {own_dim}"
            )

    def __mul__(self, scalar: int | float | Tensor) -> FactoredMatrix:
        if isinstance(scalar, Tensor) and scalar.numel() != 1:
            raise ClassicAssertionError(
                f"FactoredMatrix * x needs a scalar; got shape {tuple(scalar.shape)} (use @ for "
                f"matrix products)"
            )
        return FactoredMatrix(self.A * scalar, self.B)

    def __rmul__(self, scalar: int | float | Tensor) -> FactoredMatrix:
        return self * scalar

    @cached_property
    def _svd(
        self,
    ) -> tuple[Float[Tensor, "... ldim k"], Float[Tensor, "... k"], Float[Tensor, "... rdim k"]]:
        # AB = Qa (Ra Rb^T) Qb^T with orthonormal Qa, Qb, so only the small middle matrix
        # [min(ldim, mdim), min(rdim, mdim)] needs an SVD.
        q_left, r_left = torch.linalg.qr(self.A)
        q_right, r_right = torch.linalg.qr(self.B.transpose(-2, -1))
        u_mid, s, vh_mid = torch.linalg.svd(r_left @ r_right.transpose(-2, -1), full_matrices=False)
        return q_left @ u_mid, s, q_right @ vh_mid.transpose(-2, -1)

    def svd(
        self,
    ) -> tuple[Float[Tensor, "... ldim k"], Float[Tensor, "... k"], Float[Tensor, "... rdim k"]]:
        """(U, S, Vh) with `U @ diag(S) @ Vh.T == AB`; k = min(ldim, mdim, rdim). Cached."""
        return self._svd

    @property
    def U(self) -> Float[Tensor, "... ldim k"]:
        """Left singular vectors of AB, as columns [..., ldim, k] (see `svd`)."""
        return self._svd[0]

    @property
    def S(self) -> Float[Tensor, "... k"]:
        """Singular values of AB [..., k], in descending order (see `svd`)."""
        return self._svd[1]

    @property
    def Vh(self) -> Float[Tensor, "... rdim k"]:
        """Right singular vectors of AB, as columns [..., rdim, k]: AB = U diag(S) Vhᵀ."""
        return self._svd[2]

    @property
    def eigenvalues(self) -> Tensor:
        """Complex eigenvalues of BA: the non-zero eigenvalues of AB, from an mdim-sized matrix."""
        square = self.BA
        # eig has no 16-bit kernels on CPU or CUDA.
        if square.dtype in (torch.float16, torch.bfloat16):
            square = square.float()
        return torch.linalg.eigvals(square)

    def norm(self) -> Float[Tensor, "*leading"]:
        """Frobenius norm of AB."""
        return self.S.pow(2).sum(-1).sqrt()

    def __getitem__(self, index: IndexEntry | tuple[IndexEntry, ...]) -> FactoredMatrix:
        """Index the leading dims (None adds a leading axis); an int in the last two dims
        keeps a length-1 axis."""
        entries = _expand_ellipsis(index if isinstance(index, tuple) else (index,), self.ndim)
        leading, rows, cols = _split_entries(entries, self.ndim - 2)
        A, B = self.A[leading], self.B[leading]
        if rows:
            A = A[..., _keep_axis(rows[0]), :]
        if cols:
            B = B[..., _keep_axis(cols[0])]
        return FactoredMatrix(A, B)

    def make_even(self) -> FactoredMatrix:
        """The same matrix with the singular values split evenly: A = U√S, B = √S Vhᵀ."""
        root = self.S.sqrt().unsqueeze(-2)
        return FactoredMatrix(self.U * root, (self.Vh * root).transpose(-2, -1))

    def collapse_l(self) -> Float[Tensor, "... k rdim"]:
        """Drop the orthonormal left factor U: diag(S) Vhᵀ."""
        return self.S.unsqueeze(-1) * self.Vh.transpose(-2, -1)

    def collapse_r(self) -> Float[Tensor, "... ldim k"]:
        """Drop the orthonormal right factor Vh: U diag(S)."""
        return self.U * self.S.unsqueeze(-2)

    def unsqueeze(self, k: int) -> FactoredMatrix:
        """Add a length-1 leading dim at position k (negative k counts back from the matrix)."""
        position = k + self.ndim - 1 if k < 0 else k
        if not 0 <= position <= self.ndim - 2:
            raise ClassicAssertionError(
                f"unsqueeze({k}) must land among the {self.ndim - 2} leading dims"
            )
        return FactoredMatrix(self.A.unsqueeze(position), self.B.unsqueeze(position))

    def get_corner(self, k: int = 3) -> Tensor:
        """The top-left k×k corner of AB (and the first k entries of each leading dim)."""
        corner = self.A[..., :k, :] @ self.B[..., :, :k]
        return corner[tuple(slice(0, k) for _ in range(corner.ndim))]

    def __repr__(self) -> str:
        return f"FactoredMatrix: Shape({tuple(self.shape)}), Hidden Dim({self.mdim})"


def _keep_axis(entry: IndexEntry) -> IndexEntry:
    """Turn an int index into a length-1 slice so the matrix keeps both axes."""
    if isinstance(entry, int):
        return slice(entry, entry + 1 if entry != -1 else None)
    return entry


def _split_entries(
    entries: tuple[IndexEntry, ...], n_leading: int
) -> tuple[tuple[IndexEntry, ...], tuple[IndexEntry, ...], tuple[IndexEntry, ...]]:
    """Split an index into (leading, rows, cols). The leading part runs to its n_leading-th
    axis entry and takes the Nones right after it: a None adds a leading axis."""
    seen, end = 0, len(entries)
    for position, entry in enumerate(entries):
        if seen == n_leading and entry is not None:
            end = position
            break
        seen += entry is not None
    leading, matrix = entries[:end], entries[end:]
    if any(entry is None for entry in matrix):
        raise IndexError(
            "FactoredMatrix indexing accepts None only among the leading dims; "
            f"got {entries!r} for {n_leading} leading dims"
        )
    return leading, matrix[:1], matrix[1:]


def _expand_ellipsis(entries: tuple[IndexEntry, ...], ndim: int) -> tuple[IndexEntry, ...]:
    axes = sum(entry is not None and entry is not Ellipsis for entry in entries)
    if axes > ndim:
        raise ClassicIndexError(
            f"too many indices ({axes}) for a {ndim}-dim FactoredMatrix: {entries!r}"
        )
    # Identity checks: `in` and `.index` would compare tensor entries elementwise.
    positions = [i for i, entry in enumerate(entries) if entry is Ellipsis]
    if len(positions) > 1:
        raise IndexError(f"an index can only have a single ellipsis; got {entries!r}")
    if not positions:
        return entries
    at = positions[0]
    return entries[:at] + (slice(None),) * (ndim - axes) + entries[at + 1 :]
