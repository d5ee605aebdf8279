"""LayerNorm and LayerNormPre (LayerNorm whose weights were folded into the next layer).

Both normalise over the last axis, so they take a residual `[batch, pos, d_model]` or a
per-head input `[batch, pos, head_index, d_model]` alike.
"""

import torch
from jaxtyping import Float
from torch import Tensor, nn
from torch.nn import functional as F

from transformer_lens.hook_points import HookPoint
from transformer_lens.HookedTransformerConfig import ConfigOrDict, HookedTransformerConfig


def _fused(x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float) -> Tensor | None:
    """torch's own layer norm: the kernel HF's nn.LayerNorm runs (it computes in float32
    inside for half precision), so the rounding is the same. None where our weight dtype
    differs from the input's (the float32 path below then handles it)."""
    if weight is not None and weight.dtype != x.dtype:
        return None
    return F.layer_norm(x, x.shape[-1:], weight, bias, eps)


def _normalize(
    x: Tensor, weight: Tensor | None, bias: Tensor | None, hook_scale: HookPoint, eps: float
) -> Tensor:
    """LayerNorm with hook_scale in the middle. The fused kernel gives the result whenever
    the scale reaching the division is the one computed (unhooked, cached, or replaced by
    equal values), so a hook that changes nothing changes no bit of the output."""
    fused = _fused(x, weight, bias, eps)
    if fused is not None and not hook_scale.has_hooks():
        return fused
    dtype = x.dtype
    centred = _upcast(x)
    centred = centred - centred.mean(-1, keepdim=True)
    scale = (centred.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    hooked_scale = hook_scale(scale)
    if fused is not None and (hooked_scale is scale or torch.equal(hooked_scale, scale)):
        return fused
    normalized = centred / hooked_scale
    if weight is not None and bias is not None:
        normalized = normalized * weight.to(normalized.dtype) + bias.to(normalized.dtype)
    return normalized.to(dtype)


def _upcast(x: Tensor) -> Tensor:
    # Half precision norms lose too much in the variance; HF computes them in float32 too.
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


class LayerNormPre(nn.Module):
    """Centre and scale, with no weight or bias (they were folded into the next layer)."""

    # Read by ActivationCache.apply_ln_to_stack, which centres stacks only for such norms.
    subtracts_mean = True

    def __init__(self, cfg: ConfigOrDict, length: int | None = None):
        super().__init__()
        self.cfg = HookedTransformerConfig.unwrap(cfg)
        self.eps = self.cfg.eps
        self.hook_scale = HookPoint()
        self.hook_normalized = HookPoint()

    def forward(self, x: Float[Tensor, "*leading d"]) -> Float[Tensor, "*leading d"]:
        """(x - mean) / sqrt(var + eps) over the last axis, computed in float32 for half
        precision and returned in x's dtype."""
        return self.hook_normalized(_normalize(x, None, None, self.hook_scale, self.eps))


class LayerNorm(nn.Module):
    """LayerNorm with weight `w` and bias `b`; `hook_normalized` is taken after w and b."""

    subtracts_mean = True

    def __init__(self, cfg: ConfigOrDict, length: int | None = None):
        super().__init__()
        self.cfg = HookedTransformerConfig.unwrap(cfg)
        self.eps = self.cfg.eps
        self.length = self.cfg.d_model if length is None else length
        self.w = nn.Parameter(torch.ones(self.length, dtype=self.cfg.dtype))
        self.b = nn.Parameter(torch.zeros(self.length, dtype=self.cfg.dtype))
        self.hook_scale = HookPoint()
        self.hook_normalized = HookPoint()

    def forward(self, x: Float[Tensor, "*leading d"]) -> Float[Tensor, "*leading d"]:
        """(x - mean) / sqrt(var + eps) * w + b over the last axis, computed in float32 for
        half precision and returned in x's dtype."""
        return self.hook_normalized(_normalize(x, self.w, self.b, self.hook_scale, self.eps))
