"""Test helpers: the tiny Gemma config (tests/tiny_hf.py builds every family), loaders, and
a closeness check that says where it failed."""

import copy

import torch
from torch import Tensor

from tests.tiny_hf import randomize_norms as randomize_norms  # re-exported for older callers
from tests.tiny_hf import tiny_hf_config
from transformer_lens import HookedTransformer
from transformer_lens.verification.reference import cast_like_from_pretrained


def tiny_gemma_config(num_key_value_heads: int = 1, **overrides):
    """tiny_hf_config("gemma"), multi-query unless told otherwise."""
    return tiny_hf_config("gemma", num_key_value_heads=num_key_value_heads, **overrides)


def pretrained_loader(processed: bool):
    """from_pretrained (fold_ln and friends) or from_pretrained_no_processing."""
    if processed:
        return HookedTransformer.from_pretrained
    return HookedTransformer.from_pretrained_no_processing


def assert_close(actual: Tensor, expected: Tensor, atol: float, what: str = "") -> None:
    """Fail with the max abs difference and the index where it occurs."""
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    diff = (actual.detach().double() - expected.detach().double()).abs()
    worst = float(diff.max())
    if not worst <= atol:
        index = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
        raise AssertionError(f"{what}: max abs diff {worst:.3e} > {atol:.1e} at index {index}")


def bfloat16_like_from_pretrained(model: torch.nn.Module) -> torch.nn.Module:
    """A bfloat16 copy whose rotary inverse frequencies stay float32, as HF keeps them."""
    return cast_like_from_pretrained(copy.deepcopy(model), torch.bfloat16)


def eager_attention(model):
    """The model with the fused attention kernel off: its eager path mirrors HF eager
    attention op for op, which bit-for-bit comparisons in bfloat16 need."""
    model.cfg.use_fused_attention = False
    return model
