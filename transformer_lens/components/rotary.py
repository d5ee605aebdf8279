"""Rotary position embeddings: tables and their application.

Tables are computed the way Hugging Face computes them (float32 inverse frequencies,
position * inv_freq, then cos/sin) so that rotated queries and keys match bit for bit in
float32; they are cast to the activation dtype where they are used, as HF does.
Two layouts: NeoX/Llama "half split" (dim i pairs with i + rotary_dim/2) and GPT-J
"adjacent pairs" (2i pairs with 2i + 1). A partial rotary_dim rotates only the first dims.
"""

import math

import torch
from jaxtyping import Float, Int
from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig


def inverse_frequencies(cfg: HookedTransformerConfig, base: float) -> Float[Tensor, " half_rotary"]:
    assert cfg.rotary_dim is not None
    dim = cfg.rotary_dim
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    if cfg.use_NTK_by_parts_rope:
        inv_freq = _ntk_by_parts(cfg, inv_freq)
    if cfg.rotary_linear_scaling_factor is not None:
        inv_freq = inv_freq / cfg.rotary_linear_scaling_factor
    return inv_freq


def _ntk_by_parts(cfg: HookedTransformerConfig, inv_freq: Tensor) -> Tensor:
    """Llama-3.1 frequency scaling: long wavelengths are divided by the factor, short ones
    kept, and the band between them interpolated smoothly."""
    factor = cfg.NTK_by_parts_factor
    low, high = cfg.NTK_by_parts_low_freq_factor, cfg.NTK_by_parts_high_freq_factor
    original = cfg.NTK_original_ctx_len
    wavelength = 2 * math.pi / inv_freq
    scaled = torch.where(wavelength > original / low, inv_freq / factor, inv_freq)
    smooth = (original / wavelength - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = ~(wavelength < original / high) & ~(wavelength > original / low)
    return torch.where(is_medium, smoothed, scaled)


def rotary_tables(
    cfg: HookedTransformerConfig, base: float
) -> tuple[Float[Tensor, "n_ctx rotary_dim"], Float[Tensor, "n_ctx rotary_dim"]]:
    """(sin, cos) for every position up to n_ctx, in float32. Layers with the same settings
    share one pair of tensors (at n_ctx 8192 a pair is 16 MB per layer otherwise)."""
    key = (
        cfg.n_ctx,
        cfg.rotary_dim,
        float(base),
        cfg.rotary_adjacent_pairs,
        cfg.use_NTK_by_parts_rope,
        cfg.NTK_by_parts_factor,
        cfg.NTK_by_parts_low_freq_factor,
        cfg.NTK_by_parts_high_freq_factor,
        cfg.NTK_original_ctx_len,
        cfg.rotary_linear_scaling_factor,
    )
    if key not in _TABLES:
        _TABLES[key] = _compute_tables(cfg, base)
    return _TABLES[key]


_TABLES: dict[tuple[object, ...], tuple[Tensor, Tensor]] = {}


def _compute_tables(cfg: HookedTransformerConfig, base: float) -> tuple[Tensor, Tensor]:
    inv_freq = inverse_frequencies(cfg, base)
    freqs = torch.arange(cfg.n_ctx, dtype=torch.int64).float()[:, None] * inv_freq[None, :]
    if cfg.rotary_adjacent_pairs:
        angles = freqs.repeat_interleave(2, dim=-1)
    else:
        angles = torch.cat((freqs, freqs), dim=-1)
    return angles.sin(), angles.cos()


def _rotate(x: Tensor, adjacent_pairs: bool) -> Tensor:
    if adjacent_pairs:
        pairs = x.unflatten(-1, (-1, 2))
        return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(
    x: Float[Tensor, "batch pos heads d_head"],
    sin_table: Float[Tensor, "n_ctx rotary_dim"],
    cos_table: Float[Tensor, "n_ctx rotary_dim"],
    positions: Int[Tensor, "batch_or_1 pos"],
    adjacent_pairs: bool,
) -> Float[Tensor, "batch pos heads d_head"]:
    rotary_dim = sin_table.shape[-1]
    # [batch_or_1, pos, 1, rotary_dim]: one angle per position, shared by all heads
    sin = sin_table[positions].to(x.dtype).unsqueeze(2)
    cos = cos_table[positions].to(x.dtype).unsqueeze(2)
    if rotary_dim == x.shape[-1]:
        return x * cos + _rotate(x, adjacent_pairs) * sin
    rotated, passed = x[..., :rotary_dim], x[..., rotary_dim:]
    rotated = rotated * cos + _rotate(rotated, adjacent_pairs) * sin
    return torch.cat((rotated, passed), dim=-1)
