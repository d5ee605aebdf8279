"""The family matrix (family_rows.ROWS): every row and variant against Hugging Face eager
attention on the same random weights.

float32 tolerance 1e-5: both sides run the same maths with the same op order where it
matters; measured differences are ~1e-7 to 1e-6 at these widths."""

import warnings

import pytest
import torch

from tests.helpers import assert_close, bfloat16_like_from_pretrained, eager_attention
from tests.integration.family_rows import ATOL, CASE_IDS, CASES, FamilyRow, hf_model, tokens
from transformer_lens import HookedTransformer


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # config differs from official; no tokenizer offline
        yield


def load(row: FamilyRow, hf, **kwargs) -> HookedTransformer:
    return HookedTransformer.from_pretrained_no_processing(row.official_name, hf_model=hf, **kwargs)


@pytest.mark.parametrize(("row", "variant"), CASES, ids=CASE_IDS)
def test_logits_match_hugging_face(row, variant):
    hf = hf_model(row, variant)
    assert_close(load(row, hf)(tokens()), hf(tokens()).logits, ATOL, f"{row.name} logits")


@pytest.mark.parametrize(("row", "variant"), CASES, ids=CASE_IDS)
def test_residuals_and_patterns_match_hugging_face(row, variant):
    hf = hf_model(row, variant)
    model = load(row, hf)
    _, cache = model.run_with_cache(tokens())
    out = hf(tokens(), output_hidden_states=True, output_attentions=True)
    # HF's hidden_states[l + 1] is the output of layer l; its last entry is after the final norm.
    for layer in range(model.cfg.n_layers - 1):
        assert_close(
            cache["resid_post", layer], out.hidden_states[layer + 1], ATOL, f"resid_post {layer}"
        )
    for layer in range(model.cfg.n_layers):
        assert_close(cache["pattern", layer], out.attentions[layer], ATOL, f"pattern {layer}")


@pytest.mark.parametrize(("row", "variant"), CASES, ids=CASE_IDS)
def test_forward_run_with_cache_and_identity_hooks_give_the_same_bits(row, variant):
    # A patch that changes nothing must show no effect: the default (eager) path computes
    # the same bits whether or not anything is hooked or cached.
    model = load(row, hf_model(row, variant))
    plain = model(tokens())
    cached, cache = model.run_with_cache(tokens())
    assert len(cache) == len(model.hook_dict) - sum(
        model._hook_unavailable_reason(name) is not None for name in model.hook_dict
    )
    identity = (lambda name: True, lambda x, hook: x)
    returned_copy = (lambda name: True, lambda x, hook: x.clone())
    for logits, what in [
        (cached, "run_with_cache"),
        (model.run_with_hooks(tokens(), fwd_hooks=[identity]), "identity hooks"),
        (model.run_with_hooks(tokens(), fwd_hooks=[returned_copy]), "hooks returning copies"),
    ]:
        assert torch.equal(logits, plain), f"{row.name} {variant}: {what} changed the logits"


@pytest.mark.parametrize(("row", "variant"), CASES, ids=CASE_IDS)
def test_split_qkv_input_matches_plain(row, variant):
    model = load(row, hf_model(row, variant))
    plain = model(tokens())
    model.set_use_split_qkv_input(True)
    assert_close(model(tokens()), plain, ATOL, "split input")
    clone = (
        lambda name: name.endswith(("_q_input", "_k_input", "_v_input")),
        lambda x, hook: x.clone(),
    )
    assert_close(
        model.run_with_hooks(tokens(), fwd_hooks=[clone]), plain, ATOL, "materialised split input"
    )


@pytest.mark.parametrize(("row", "variant"), CASES, ids=CASE_IDS)
def test_processed_weights_keep_log_probs(row, variant):
    hf = hf_model(row, variant)
    processed = HookedTransformer.from_pretrained(row.official_name, hf_model=hf)
    expected = hf(tokens()).logits.log_softmax(-1)
    assert_close(processed(tokens()).log_softmax(-1), expected, 1e-4, "processed log-probs")


@pytest.mark.parametrize(("row", "variant"), CASES, ids=CASE_IDS)
def test_saved_directory_loads_like_hf_model(row, variant, tmp_path):
    hf = hf_model(row, variant)
    hf.save_pretrained(tmp_path)
    from_path = HookedTransformer.from_pretrained_no_processing(str(tmp_path))
    assert torch.equal(from_path(tokens()), load(row, hf)(tokens()))


BF16_CASES = [(row, variant) for row, variant in CASES if row.bf16_tolerance is not None]


@pytest.mark.parametrize(
    ("row", "variant"), BF16_CASES, ids=[f"{r.name}-{v}" for r, v in BF16_CASES]
)
def test_bfloat16_matches_hugging_face_bfloat16(row, variant):
    """Both sides round every op to bfloat16; we mirror HF's dtype choices op by op (norms
    and softmax in float32, rotary tables computed in float32 then cast). The reference is
    built as `from_pretrained(dtype=bfloat16)` builds it: rotary frequencies stay float32."""
    hf = bfloat16_like_from_pretrained(hf_model(row, variant))
    ours = eager_attention(load(row, hf, dtype=torch.bfloat16))(tokens()).float()
    reference = hf(tokens()).logits.float()
    diff = float((ours - reference).abs().max())
    assert diff <= row.bf16_tolerance, f"bf16 max |logit diff| {diff:.4f}"
