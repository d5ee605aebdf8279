"""process_weights_ on a float32 CPU model streams its own weights through the loader's
pieces and writes them back in place: the result is that of processing the whole state
dict (the path of load_and_process_state_dict), on every family row."""

import copy
import warnings

import pytest
import torch

from tests.integration.family_rows import CASE_IDS, CASES, VOCAB, hf_model
from transformer_lens import HookedTransformer
from transformer_lens.pretrained import processing
from transformer_lens.pretrained.streaming import vocab_blocks

BATCH, POS = 2, 11
# center_unembed's mean over the vocabulary is summed block by block when streamed and in
# one reduction when whole: float32 summation order, a few ulp of entries of size ~1, which
# in half precision can flip the rounding of an entry by one unit in the last place.
VOCAB_KEYS = ("unembed.W_U", "unembed.b_U")
MEAN_ATOL = 1e-6
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@pytest.fixture(autouse=True)
def _quiet_and_no_grad():
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # config differs from official; no tokenizer offline
        yield


def whole_state_dict_processed(model: HookedTransformer) -> HookedTransformer:
    """A copy of the model processed through one processed copy of its state dict."""
    other = copy.deepcopy(model)
    other.load_and_process_state_dict(other.state_dict())
    return other


def assert_same_weights(streamed: HookedTransformer, whole: HookedTransformer) -> None:
    """Bit for bit, except W_U and b_U: within the mean's summation order (one ulp of the
    parameter's dtype in half precision)."""
    actual, expected = streamed.state_dict(), whole.state_dict()
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert actual[key].dtype == value.dtype, key
        if key in VOCAB_KEYS:
            ulp = torch.finfo(value.dtype).eps if value.dtype != torch.float32 else 0.0
            torch.testing.assert_close(actual[key], value, atol=MEAN_ATOL, rtol=ulp, msg=key)
        else:
            assert torch.equal(actual[key], value), key


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("row", "variant"), CASES, ids=CASE_IDS)
def test_streamed_processing_gives_the_weights_of_whole_processing(
    row, variant, dtype, monkeypatch
):
    # Blocks of 7 vocabulary rows: many blocks, each read and rewritten in the same memory.
    monkeypatch.setattr(vocab_blocks, "_BLOCK_BYTES", 7 * 4 * 64)
    hf = hf_model(row, variant)
    model = HookedTransformer.from_pretrained_no_processing(
        row.official_name, hf_model=hf, dtype=dtype
    )
    assert processing.can_process_in_place(model)
    whole = whole_state_dict_processed(model)
    model.process_weights_()
    assert model.cfg.normalization_type == whole.cfg.normalization_type
    assert_same_weights(model, whole)
    if dtype == torch.float32:
        tokens = torch.randint(0, VOCAB, (BATCH, POS), generator=torch.Generator().manual_seed(0))
        expected = hf(tokens).logits.log_softmax(-1)
        torch.testing.assert_close(model(tokens).log_softmax(-1), expected, atol=1e-4, rtol=0)


def test_an_unembedding_of_its_own_is_rewritten_in_its_own_memory():
    """No second vocabulary-sized matrix: W_U's processed rows go where its rows were."""
    row, variant = next((r, v) for r, v in CASES if r.official_name == "google/gemma-2b")
    model = HookedTransformer.from_pretrained_no_processing(
        row.official_name, hf_model=hf_model(row, variant)
    )
    assert not model.unembed.is_tied_to(model.embed)  # Gemma's W_E is scaled by sqrt(d_model)
    address = model.W_U.data_ptr()
    before = model.W_U.clone()
    model.process_weights_()
    assert model.W_U.data_ptr() == address
    assert not torch.equal(model.W_U, before)


def test_a_tied_unembedding_is_untied_before_its_rows_are_rewritten():
    row, variant = next((r, v) for r, v in CASES if r.official_name == "gpt2")
    model = HookedTransformer.from_pretrained_no_processing(
        row.official_name, hf_model=hf_model(row, variant)
    )
    assert model.unembed.is_tied_to(model.embed)
    whole = whole_state_dict_processed(model)
    model.process_weights_()
    assert not model.unembed.is_tied_to(model.embed)
    assert_same_weights(model, whole)


def test_a_wrapped_unembedding_takes_the_whole_path():
    """circuit-tracer's wrappers rename W_U (unembed.old_unembed.W_U): no identity plan."""

    class Wrapper(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.old_unembed = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.old_unembed(x)

    row, variant = CASES[0]
    model = HookedTransformer.from_pretrained_no_processing(
        row.official_name, hf_model=hf_model(row, variant)
    )
    assert processing.can_process_in_place(model)
    model.unembed = Wrapper(model.unembed)
    assert not processing.can_process_in_place(model)


@pytest.mark.parametrize("official_name", ["google/gemma-2b", "gpt2"])
def test_a_refused_step_leaves_the_model_as_it_was(official_name):
    """Processing refuses a rotary refactor (Gemma) and folds it cannot do exactly (here a
    GPT-2 whose config claims experts): the refusal must come before any weight is
    rewritten, any norm switched or a tied unembedding untied."""
    row, variant = next((r, v) for r, v in CASES if r.official_name == official_name)
    model = HookedTransformer.from_pretrained_no_processing(
        row.official_name, hf_model=hf_model(row, variant)
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    norm = model.cfg.normalization_type
    tokens = torch.arange(10)[None] % VOCAB
    logits = model(tokens)
    if official_name == "gpt2":  # not rotary: refuse through a config the fold cannot do
        model.cfg.num_experts = 2
    with pytest.raises(ValueError, match="refactor_factored_attn_matrices|mixture-of-experts"):
        model.process_weights_(refactor_factored_attn_matrices=True)
    model.cfg.num_experts = None
    assert model.cfg.normalization_type == norm
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert torch.equal(model(tokens), logits)


def test_processing_twice_gives_what_whole_processing_gives():
    """A second process_weights_ finds the norms folded: as the whole path, it folds
    nothing more (and centring again changes nothing beyond rounding)."""
    row, variant = next((r, v) for r, v in CASES if r.official_name == "gpt2")
    model = HookedTransformer.from_pretrained_no_processing(
        row.official_name, hf_model=hf_model(row, variant)
    )
    model.process_weights_()
    whole = whole_state_dict_processed(model)
    model.process_weights_()
    assert_same_weights(model, whole)
