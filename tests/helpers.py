"""Test helpers: tiny HF configs and a closeness check that says where it failed."""

import copy

import torch
from torch import Tensor

from transformer_lens import HookedTransformer
from transformer_lens.verification.reference import cast_like_from_pretrained


def tiny_gemma_config(num_key_value_heads: int = 1, **overrides):
    from transformers import GemmaConfig

    fields = dict(
        vocab_size=101,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=num_key_value_heads,
        head_dim=16,
        max_position_embeddings=64,
        attn_implementation="eager",
    )
    fields.update(overrides)
    return GemmaConfig(**fields)


def pretrained_loader(processed: bool):
    """from_pretrained (fold_ln and friends) or from_pretrained_no_processing."""
    if processed:
        return HookedTransformer.from_pretrained
    return HookedTransformer.from_pretrained_no_processing


@torch.no_grad()
def randomize_norms(model: torch.nn.Module, std: float = 0.5) -> None:
    """Random norm weights and all biases, so that a wrong 1 + w, a skipped norm or a
    dropped bias shows (HF initialises norms to 1 or 0 and biases to 0)."""
    generator = torch.Generator().manual_seed(1)
    for name, param in model.named_parameters():
        module_name = name.split(".")[-2] if "." in name else name
        if "norm" in name or "ln" in module_name or name.endswith(".bias"):
            param.copy_(torch.randn(param.shape, generator=generator) * std)


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
