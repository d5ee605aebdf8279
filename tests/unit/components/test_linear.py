"""components._linear.linear: F.linear with the weight split across CPU threads for inputs
of few rows. Same values as F.linear up to float32 summation order, the same errors, and
plain F.linear wherever the split was not measured to pay."""

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import pretrained_loader
from transformer_lens.components import _linear
from transformer_lens.components._linear import linear

pytestmark = [
    # Expected when the tiny Gemma loads under an official name, offline.
    pytest.mark.filterwarnings("ignore:hf_model's config differs from the official:UserWarning"),
    pytest.mark.filterwarnings("ignore:Could not load a tokenizer:UserWarning"),
    pytest.mark.filterwarnings("ignore:center_writing_weights skipped:UserWarning"),
]

# Products of at most 48 terms of magnitude ~1: float32 summation-order differences stay
# below 1e-5, while a wrong block (a shifted or swapped column) is off by ~1.
ATOL = 1e-5
D_IN = 48


@pytest.fixture
def bmm_calls(monkeypatch) -> list[int]:
    """The batch size of each torch.bmm call (the split's only product: one batch item per
    block); restored after the test."""
    calls: list[int] = []
    original = torch.bmm

    def counting_bmm(left, *args, **kwargs):
        calls.append(left.shape[0])
        return original(left, *args, **kwargs)

    monkeypatch.setattr(torch, "bmm", counting_bmm)
    return calls


@pytest.fixture
def split_small_weights(monkeypatch):
    """Split even the tiny weights the tests use."""
    monkeypatch.setattr(_linear, "MIN_BLOCK_ELEMENTS", 1)


def make_weight(d_out: int, layout: str, dtype=torch.float32) -> torch.Tensor:
    """[d_out, D_IN] in HF's layout (rows contiguous) or as the transpose of a row-major
    [D_IN, d_out] matrix (columns contiguous), the two layouts our parameters use."""
    generator = torch.Generator().manual_seed(d_out)
    if layout == "hf":
        return torch.randn(d_out, D_IN, generator=generator, dtype=dtype)
    return torch.randn(D_IN, d_out, generator=generator, dtype=dtype).T


@pytest.mark.usefixtures("split_small_weights", "torch_threads")
@pytest.mark.parametrize("layout", ["hf", "row_major"])
@pytest.mark.parametrize("leading", [(1,), (1, 1), (5,), (2, 3), (64,), (2, 65)])
@pytest.mark.parametrize("n_threads, d_out", [(2, 64), (2, 37), (3, 64), (4, 30)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_split_equals_the_float64_product(bmm_calls, layout, leading, n_threads, d_out, with_bias):
    torch.set_num_threads(n_threads)
    weight = make_weight(d_out, layout)
    x = torch.randn(*leading, D_IN, generator=torch.Generator().manual_seed(1))
    bias = torch.randn(d_out) if with_bias else None
    out = linear(x, weight, bias)
    assert bmm_calls == [n_threads], "one block per thread"
    reference = F.linear(x.double(), weight.double(), None if bias is None else bias.double())
    assert out.shape == (*leading, d_out)
    assert out.dtype == torch.float32 and out.is_contiguous()
    torch.testing.assert_close(out.double(), reference, atol=ATOL, rtol=0)


@pytest.mark.usefixtures("torch_threads")
@pytest.mark.parametrize(
    "case",
    [
        "bfloat16",
        "too_many_rows",
        "small_weight",
        "one_thread",
        "strided_weight",
        "fewer_outputs_than_blocks",
    ],
)
def test_falls_back_to_F_linear_where_the_split_was_not_measured_to_pay(
    bmm_calls, monkeypatch, case
):
    torch.set_num_threads(2)
    rows, d_out, dtype = 3, 64, torch.float32
    weight = make_weight(d_out, "hf")
    if case != "small_weight":  # else the default: 3072 elements, under two blocks' worth
        monkeypatch.setattr(_linear, "MIN_BLOCK_ELEMENTS", 1)
    if case == "bfloat16":
        dtype = torch.bfloat16
        weight = weight.to(dtype)
    elif case == "too_many_rows":
        rows = _linear.MAX_SPLIT_ROWS + 1
    elif case == "one_thread":
        torch.set_num_threads(1)
    elif case == "strided_weight":
        weight = torch.randn(2 * d_out, 2 * D_IN)[::2, ::2]
    elif case == "fewer_outputs_than_blocks":
        weight = weight[:3]
    x = torch.randn(rows, D_IN, dtype=dtype)
    out = linear(x, weight)
    assert not bmm_calls
    assert torch.equal(out, F.linear(x, weight))


@pytest.mark.usefixtures("torch_threads")
@pytest.mark.parametrize(
    "n_threads, min_block, d_out, blocks",
    [(4, 64 * D_IN // 2, 64, 2), (4, 64 * D_IN // 3, 64, 3), (16, 1, 20, 10)],
)
def test_blocks_are_never_smaller_than_min_block_elements_or_two_outputs(
    bmm_calls, monkeypatch, n_threads, min_block, d_out, blocks
):
    # Many threads on a narrow weight: fewer, larger blocks instead of one per thread.
    torch.set_num_threads(n_threads)
    monkeypatch.setattr(_linear, "MIN_BLOCK_ELEMENTS", min_block)
    weight = make_weight(d_out, "hf")
    x = torch.randn(2, D_IN)
    out = linear(x, weight)
    assert bmm_calls == [blocks]
    torch.testing.assert_close(
        out.double(), F.linear(x.double(), weight.double()), atol=ATOL, rtol=0
    )


@pytest.mark.usefixtures("split_small_weights", "torch_threads")
def test_a_bias_of_another_dtype_raises_as_in_F_linear(bmm_calls):
    torch.set_num_threads(2)
    with pytest.raises(RuntimeError):
        linear(torch.randn(1, D_IN), make_weight(64, "hf"), torch.zeros(64, dtype=torch.float64))
    assert not bmm_calls


@pytest.mark.usefixtures("split_small_weights", "torch_threads")
def test_an_input_of_the_wrong_width_raises_instead_of_being_reshaped():
    # 96 values would reshape into two rows of 48: the width check must come first. Called
    # past jaxtyping's shape check (on in this test run) to reach our own.
    torch.set_num_threads(2)
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        getattr(linear, "__wrapped__", linear)(torch.randn(1, 2 * D_IN), make_weight(64, "hf"))


@pytest.mark.usefixtures("split_small_weights", "torch_threads")
@pytest.mark.parametrize("rows", [1, 70])
def test_gradients_equal_F_linear_gradients(bmm_calls, rows):
    torch.set_num_threads(2)
    leaves = [
        torch.randn(rows, D_IN).requires_grad_(),
        make_weight(64, "row_major").detach().requires_grad_(),
        torch.randn(64).requires_grad_(),
    ]
    upstream = torch.randn(rows, 64)
    grads = []
    for fn in (linear, F.linear):
        (fn(*leaves) * upstream).sum().backward()
        grads.append([leaf.grad.clone() for leaf in leaves])
        for leaf in leaves:
            leaf.grad = None
    assert bmm_calls
    for split_grad, plain_grad in zip(*grads, strict=True):
        torch.testing.assert_close(split_grad, plain_grad, atol=ATOL, rtol=0)


# ----- a whole model with every projection split ---------------------------------------------
@pytest.mark.usefixtures("split_small_weights", "torch_threads")
@pytest.mark.parametrize("processed", [False, True], ids=["raw", "processed"])
def test_gemma_with_every_projection_split_matches_hugging_face(
    tiny_gemma_factory, bmm_calls, processed
):
    torch.set_num_threads(2)
    hf = tiny_gemma_factory(2)
    model = pretrained_loader(processed)("google/gemma-2b", hf_model=hf)
    tokens = torch.randint(0, 101, (1, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(tokens, return_type="logits")
        reference = hf(tokens).logits
        # float32 on both sides, summed in different orders (tests/integration/
        # test_gemma_parity.py measured <= 5e-7 there; the split adds only reordering).
        torch.testing.assert_close(
            ours.log_softmax(-1), reference.log_softmax(-1), atol=ATOL, rtol=0
        )
        generated = model.generate(
            tokens, max_new_tokens=12, do_sample=False, stop_at_eos=False, verbose=False
        )
        expected = hf.generate(
            tokens, max_new_tokens=12, min_new_tokens=12, do_sample=False, pad_token_id=0
        )
    assert bmm_calls, "the split did not run"
    assert torch.equal(generated, expected)
