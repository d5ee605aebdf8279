"""Architectures the registry has no adapter for are refused, naming them."""

import pytest

from tests.tiny_hf import tiny_hf
from tests.unit.pretrained.loading import LOADING_MARKS
from transformer_lens import HookedTransformer
from transformer_lens.pretrained.registry import ADAPTERS

pytestmark = LOADING_MARKS


def tiny_opt():
    return tiny_hf("opt", random_norms=False)


def test_unsupported_architecture_raises_naming_it():
    assert "OPTForCausalLM" not in ADAPTERS  # pick another unsupported model if OPT lands
    with pytest.raises(ValueError, match="Unsupported architecture.*OPTForCausalLM"):
        HookedTransformer.from_pretrained("tiny-model", hf_model=tiny_opt())


def test_t5_is_refused():
    with pytest.raises(RuntimeError, match="encoder-decoder"):
        HookedTransformer.from_pretrained("t5-small")
