import pytest
import torch

from transformer_lens.FactoredMatrix import FactoredMatrix


@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _random_factors(*leading: int, ldim: int = 6, mdim: int = 3, rdim: int = 5):
    generator = torch.Generator().manual_seed(0)
    A = torch.randn(*leading, ldim, mdim, generator=generator, dtype=torch.float64)
    B = torch.randn(*leading, mdim, rdim, generator=generator, dtype=torch.float64)
    return A, B


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-9) -> None:
    assert actual.shape == expected.shape, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    diff = (actual - expected).abs()
    worst = int(diff.argmax()) if diff.numel() else 0
    assert diff.max() <= atol if diff.numel() else True, (
        f"max abs diff {diff.max().item():.3g} at flat index {worst}"
    )


def test_dims_and_products():
    A, B = _random_factors(2)
    matrix = FactoredMatrix(A, B)
    assert (matrix.ldim, matrix.mdim, matrix.rdim) == (6, 3, 5)
    assert matrix.shape == torch.Size([2, 6, 5])
    assert matrix.ndim == 3
    assert matrix.pair[0] is matrix.A
    assert_close(matrix.AB, A @ B)
    assert_close(matrix.T.AB, (A @ B).transpose(-2, -1))


def test_ba_needs_square_and_matches_b_times_a():
    A, B = _random_factors(ldim=5, rdim=5)
    assert_close(FactoredMatrix(A, B).BA, B @ A)
    for error in (ValueError, AssertionError):
        with pytest.raises(error, match="ldim == rdim"):
            _ = FactoredMatrix(*_random_factors(ldim=6, rdim=5)).BA


def test_has_leading_dims():
    A, B = _random_factors()
    assert FactoredMatrix(A, B).has_leading_dims is False
    stacked, _ = _random_factors(2)
    assert FactoredMatrix(stacked, B).has_leading_dims is True
    assert FactoredMatrix(A, B).unsqueeze(0).has_leading_dims is True


def test_leading_dims_broadcast():
    A, _ = _random_factors(3, 1)
    _, B = _random_factors(4)
    matrix = FactoredMatrix(A, B)
    assert matrix.shape == torch.Size([3, 4, 6, 5])
    assert_close(matrix.AB, A @ B)


@pytest.mark.parametrize("other_cols", [2, 4, 8])
def test_matmul_with_tensor_on_either_side(other_cols):
    A, B = _random_factors(2)
    matrix = FactoredMatrix(A, B)
    right = torch.randn(5, other_cols)
    left = torch.randn(other_cols, 6)
    product = matrix @ right
    assert isinstance(product, FactoredMatrix)
    # mdim 3 is narrower than rdim 5, so the product keeps A and folds `right` into B.
    assert product.mdim == 3
    assert_close(product.A, A)
    assert_close(product.B, B @ right)
    assert_close(product.AB, A @ B @ right)
    left_product = left @ matrix
    assert isinstance(left_product, FactoredMatrix)
    assert_close(left_product.AB, left @ A @ B)


def test_matmul_with_vectors_returns_tensors():
    A, B = _random_factors(2)
    matrix = FactoredMatrix(A, B)
    right, left = torch.randn(5), torch.randn(6)
    assert_close(matrix @ right, (A @ B @ right[:, None]).squeeze(-1))
    assert_close(left @ matrix, (left[None, :] @ A @ B).squeeze(-2))


def test_matmul_of_two_factored_matrices():
    A, B = _random_factors(2)
    C, D = _random_factors(2, ldim=5, mdim=2, rdim=7)
    product = FactoredMatrix(A, B) @ FactoredMatrix(C, D)
    assert isinstance(product, FactoredMatrix)
    assert product.mdim == 2
    assert_close(product.AB, A @ B @ C @ D)


def test_product_of_wide_factors_keeps_the_narrower_shared_dim():
    # A [2, 6] B [6, 3] times C [3, 8] D [8, 4]: the narrowest inner dimension of the chain
    # is the shared dim 3, so the product is factored as (A @ B) [2, 3] and (C @ D) [3, 4].
    A, B = _random_factors(ldim=2, mdim=6, rdim=3)
    C, D = _random_factors(ldim=3, mdim=8, rdim=4)
    product = FactoredMatrix(A, B) @ FactoredMatrix(C, D)
    assert isinstance(product, FactoredMatrix)
    assert (product.ldim, product.mdim, product.rdim) == (2, 3, 4)
    assert_close(product.A, A @ B)
    assert_close(product.B, C @ D)
    assert_close(product.AB, A @ B @ C @ D)


def test_matmul_with_wide_factor_collapses_to_the_outer_dim():
    # mdim 6 exceeds both ldim 2 and rdim 3, so a product is factored across 2 or 3.
    A, B = _random_factors(ldim=2, mdim=6, rdim=3)
    matrix = FactoredMatrix(A, B)
    right, left = torch.randn(3, 4), torch.randn(5, 2)
    product = matrix @ right
    assert product.mdim == 3
    assert_close(product.A, A @ B)
    assert_close(product.B, right)
    left_product = left @ matrix
    assert left_product.mdim == 2
    assert_close(left_product.A, left)
    assert_close(left_product.B, A @ B)
    assert_close(left_product.AB, left @ A @ B)


def test_matmul_with_narrow_factor_keeps_it():
    A, B = _random_factors(ldim=6, mdim=2, rdim=5)
    matrix = FactoredMatrix(A, B)
    left = torch.randn(4, 6)
    left_product = left @ matrix
    assert left_product.mdim == 2
    assert_close(left_product.A, left @ A)
    assert_close(left_product.B, B)


def test_matmul_on_a_tie_multiplies_out_the_factored_side():
    # mdim == rdim == ldim: the product is (AB, right) and (left, AB), as in classic.
    A, B = _random_factors(ldim=4, mdim=4, rdim=4)
    matrix = FactoredMatrix(A, B)
    right, left = torch.randn(4, 3), torch.randn(3, 4)
    assert_close((matrix @ right).A, A @ B)
    assert_close((matrix @ right).B, right)
    assert_close((left @ matrix).A, left)
    assert_close((left @ matrix).B, A @ B)


@pytest.mark.parametrize(
    "product",
    [
        lambda m: m @ torch.randn(4, 2),
        lambda m: torch.randn(2, 4) @ m,
        lambda m: m @ torch.randn(4),
        lambda m: torch.randn(4) @ m,
    ],
)
def test_matmul_dimension_mismatch_raises(product):
    matrix = FactoredMatrix(*_random_factors())
    with pytest.raises(AssertionError, match="matmul dimension mismatch"):
        product(matrix)
    with pytest.raises(ValueError, match=r"shape \(6, 5\)"):
        product(matrix)


def test_scalar_multiplication_on_both_sides():
    A, B = _random_factors()
    matrix = FactoredMatrix(A, B)
    assert_close((matrix * 3).AB, 3 * A @ B)
    assert_close((2.5 * matrix).AB, 2.5 * A @ B)
    assert_close((matrix * torch.tensor(-2.0)).AB, -2 * A @ B)


@pytest.mark.parametrize("dims", [(6, 3, 5), (3, 6, 5), (6, 5, 3), (4, 4, 4)])
def test_svd_reconstructs_product(dims):
    ldim, mdim, rdim = dims
    A, B = _random_factors(2, ldim=ldim, mdim=mdim, rdim=rdim)
    matrix = FactoredMatrix(A, B)
    U, S, Vh = matrix.svd()
    rank = min(dims)
    assert U.shape == (2, ldim, rank) and S.shape == (2, rank) and Vh.shape == (2, rdim, rank)
    assert_close(U @ torch.diag_embed(S) @ Vh.transpose(-2, -1), A @ B)
    assert_close(S, torch.linalg.svdvals(A @ B)[..., :rank])
    assert matrix.svd()[0] is U
    assert matrix.U is U and matrix.S is S and matrix.Vh is Vh


def test_norm_is_frobenius_norm_of_product():
    A, B = _random_factors(3)
    assert_close(FactoredMatrix(A, B).norm(), torch.linalg.norm(A @ B, dim=(-2, -1)))


def test_eigenvalues_are_those_of_ba():
    A, B = _random_factors(2, ldim=5, rdim=5)
    eigenvalues = FactoredMatrix(A, B).eigenvalues
    assert eigenvalues.is_complex()
    expected = torch.linalg.eigvals(B @ A)
    for got, want in zip(eigenvalues, expected, strict=True):
        got_sorted = got[torch.argsort(got.real * 1e6 + got.imag)]
        want_sorted = want[torch.argsort(want.real * 1e6 + want.imag)]
        assert_close(torch.view_as_real(got_sorted), torch.view_as_real(want_sorted))


def test_eigenvalues_of_a_wide_factor_include_the_zeros():
    # mdim 5 > ldim = rdim = 3: BA [5, 5] has AB's three eigenvalues plus two zeros.
    A, B = _random_factors(ldim=3, mdim=5, rdim=3)
    eigenvalues = FactoredMatrix(A, B).eigenvalues
    assert eigenvalues.shape == (5,)
    by_size = eigenvalues[torch.argsort(eigenvalues.abs())]
    assert_close(by_size[:2].abs(), torch.zeros(2), atol=1e-9)
    expected = torch.linalg.eigvals(A @ B)
    assert_close(torch.sort(by_size[2:].abs()).values, torch.sort(expected.abs()).values, atol=1e-9)


def test_eigenvalues_in_half_precision_are_computed_in_float32():
    A, B = _random_factors(ldim=4, mdim=2, rdim=4)
    matrix = FactoredMatrix(A.bfloat16(), B.bfloat16())
    eigenvalues = matrix.eigenvalues
    assert eigenvalues.dtype == torch.complex64
    # The same bfloat16 product BA, decomposed in float64.
    expected = torch.linalg.eigvals((B.bfloat16() @ A.bfloat16()).double())
    assert_close(
        torch.sort(eigenvalues.abs().double()).values,
        torch.sort(expected.abs()).values,
        atol=1e-5,
    )


def test_indexing_leading_dims_and_matrix_dims():
    A, B = _random_factors(3, 2)
    matrix = FactoredMatrix(A, B)
    full = A @ B
    assert_close(matrix[1].AB, full[1])
    assert_close(matrix[1:, 0].AB, full[1:, 0])
    assert_close(matrix[..., 2:4, :].AB, full[..., 2:4, :])
    row = matrix[0, 1, 2]
    assert row.shape == torch.Size([1, 5])
    assert_close(row.AB, full[0, 1, 2:3])
    picked = matrix[torch.tensor([2, 0]), ..., 1:3]
    assert_close(picked.AB, full[torch.tensor([2, 0])][..., 1:3])
    corner = matrix[0, 1, -1, 3]
    assert corner.shape == torch.Size([1, 1])
    assert_close(corner.AB, full[0, 1, -1:, 3:4])


def test_indexing_with_none_adds_a_leading_axis():
    A, B = _random_factors(3)
    matrix = FactoredMatrix(A, B)
    full = A @ B
    assert_close(matrix[None].AB, full[None])
    assert_close(matrix[1, None].AB, full[1, None])
    assert_close(matrix[None, 1, 2:4].AB, full[None, 1, 2:4])
    with pytest.raises(IndexError, match="only among the leading dims"):
        _ = matrix[0, 1, None]


def test_too_many_indices_raise_index_and_value_errors():
    matrix = FactoredMatrix(*_random_factors(3))
    for error in (IndexError, ValueError):
        with pytest.raises(error, match="too many indices"):
            _ = matrix[0, 1, 2, 3]


def test_make_even_preserves_product_and_balances_factors():
    A, B = _random_factors(2)
    even = FactoredMatrix(A, B).make_even()
    assert_close(even.AB, A @ B)
    assert_close(even.A.pow(2).sum(-2), even.B.pow(2).sum(-1))


def test_collapse_left_and_right():
    A, B = _random_factors()
    matrix = FactoredMatrix(A, B)
    assert_close(matrix.U @ matrix.collapse_l(), A @ B)
    assert_close(matrix.collapse_r() @ matrix.Vh.T, A @ B)


def test_unsqueeze_adds_a_leading_dim():
    A, B = _random_factors(3)
    matrix = FactoredMatrix(A, B)
    assert matrix.unsqueeze(0).shape == torch.Size([1, 3, 6, 5])
    assert matrix.unsqueeze(-1).shape == torch.Size([3, 1, 6, 5])
    for error in (ValueError, AssertionError):
        with pytest.raises(error, match="leading dims"):
            matrix.unsqueeze(3)


def test_get_corner_and_repr():
    A, B = _random_factors(4)
    matrix = FactoredMatrix(A, B)
    assert_close(matrix.get_corner(2), (A @ B)[:2, :2, :2])
    assert repr(matrix) == "FactoredMatrix: Shape((4, 6, 5)), Hidden Dim(3)"


def _construct_past_the_type_checker(A: torch.Tensor, B: torch.Tensor) -> None:
    # The test run checks jaxtyping annotations, which refuse these shapes before the
    # constructor's own check; call the undecorated __init__ to reach ours.
    init = FactoredMatrix.__init__
    getattr(init, "__wrapped__", init)(FactoredMatrix.__new__(FactoredMatrix), A, B)


@pytest.mark.parametrize("error", [ValueError, AssertionError])
def test_bad_factors_and_scalars_raise_value_and_assertion_errors(error):
    with pytest.raises(error, match=r"got A \(4, 3\) and B \(2, 5\)"):
        _construct_past_the_type_checker(torch.randn(4, 3), torch.randn(2, 5))
    with pytest.raises(error, match="got A"):
        _construct_past_the_type_checker(torch.randn(3), torch.randn(3, 2))
    with pytest.raises(error, match="needs a scalar"):
        _ = FactoredMatrix(*_random_factors()) * torch.ones(2)
