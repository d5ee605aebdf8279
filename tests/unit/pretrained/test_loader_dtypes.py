"""The dtypes the loader gives (dtype and torch_dtype, strings or torch dtypes, from an HF
model or a directory) and the quantised loading it refuses."""

import copy

import pytest
import torch

from tests.unit.pretrained.loading import LOADING_MARKS, TOKENS
from transformer_lens import HookedTransformer

pytestmark = LOADING_MARKS


def param_dtypes(model: HookedTransformer) -> set[torch.dtype]:
    return {param.dtype for param in model.parameters()}


def split_dtypes(model: HookedTransformer) -> tuple[set[torch.dtype], set[torch.dtype]]:
    """(dtypes of the weight matrices and biases, dtypes of the RMSNorm weights). RMSNorm
    weights stay float32 by design: Gemma's 1 + w would be rounded in bfloat16."""
    norms = {p.dtype for name, p in model.named_parameters() if name.endswith(".w")}
    others = {p.dtype for name, p in model.named_parameters() if not name.endswith(".w")}
    return others, norms


def test_no_processing_dtype_string_gives_bfloat16_parameters(hf_gemma):
    model = HookedTransformer.from_pretrained_no_processing(
        "google/gemma-2b", hf_model=hf_gemma, dtype="bfloat16"
    )
    assert split_dtypes(model) == ({torch.bfloat16}, {torch.float32})
    assert model.cfg.dtype is torch.bfloat16
    assert model(TOKENS).dtype == torch.bfloat16


def test_no_processing_torch_dtype_kwarg_overrides_dtype(hf_gemma):
    model = HookedTransformer.from_pretrained_no_processing(
        "google/gemma-2b", hf_model=hf_gemma, dtype="bfloat16", torch_dtype=torch.float16
    )
    assert split_dtypes(model) == ({torch.float16}, {torch.float32})
    assert model.cfg.dtype is torch.float16


def test_dtype_string_gives_bfloat16_parameters(hf_gemma):
    model = HookedTransformer.from_pretrained(
        "google/gemma-2b", hf_model=hf_gemma, dtype="bfloat16"
    )
    assert param_dtypes(model) == {torch.bfloat16}
    assert model.cfg.dtype is torch.bfloat16


def test_torch_dtype_kwarg_overrides_dtype(hf_gemma):
    model = HookedTransformer.from_pretrained(
        "google/gemma-2b", hf_model=hf_gemma, dtype="bfloat16", torch_dtype=torch.float16
    )
    assert param_dtypes(model) == {torch.float16}


def test_bfloat16_hf_model_loads_into_the_default_float32(hf_gemma):
    model = HookedTransformer.from_pretrained(
        "google/gemma-2b", hf_model=copy.deepcopy(hf_gemma).to(torch.bfloat16)
    )
    assert param_dtypes(model) == {torch.float32}


def test_float32_checkpoint_directory_loads_as_bfloat16(checkpoint_dir):
    model = HookedTransformer.from_pretrained(str(checkpoint_dir), dtype="bfloat16")
    assert param_dtypes(model) == {torch.bfloat16}


@pytest.mark.parametrize(
    "option",
    [dict(load_in_8bit=True), dict(load_in_4bit=True), dict(quantization_config={"bits": 8})],
)
def test_quantised_loading_is_refused(hf_gemma, option):
    with pytest.raises(ValueError, match="Quantised loading is not supported"):
        HookedTransformer.from_pretrained("google/gemma-2b", hf_model=hf_gemma, **option)
