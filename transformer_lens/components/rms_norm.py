"""RMSNorm and RMSNormPre (RMSNorm whose weight was folded into the next layer).

Numerics follow Hugging Face: the mean square and the scaling run in float32, and
`hook_normalized` is taken before the weight, as in classic TransformerLens.
"""

import torch
from jaxtyping import Float
from torch import Tensor, nn

from transformer_lens.hook_points import HookPoint
from transformer_lens.HookedTransformerConfig import ConfigOrDict, HookedTransformerConfig


def _normalize(module: "RMSNormPre", x: Tensor) -> Tensor:
    x = x.float()
    mean_square = x.pow(2).mean(-1, keepdim=True) + module.eps
    scale = mean_square.sqrt()
    hooked_scale = module.hook_scale(scale)
    # HF multiplies by rsqrt; x / sqrt differs in the last bit, which bfloat16 can amplify.
    # A hook that replaced the scale gets the classic division by its value; one that kept
    # it (or returned equal values) changes no bit.
    if hooked_scale is scale or torch.equal(hooked_scale, scale):
        return module.hook_normalized(x * torch.rsqrt(mean_square))
    return module.hook_normalized(x / hooked_scale)


class RMSNormPre(nn.Module):
    """Divide by the root mean square; no weight."""

    # Read by ActivationCache.apply_ln_to_stack: RMS norms do not centre.
    subtracts_mean = False

    def __init__(self, cfg: ConfigOrDict, length: int | None = None):
        super().__init__()
        self.cfg = HookedTransformerConfig.unwrap(cfg)
        self.eps = self.cfg.eps
        self.hook_scale = HookPoint()
        self.hook_normalized = HookPoint()

    def forward(self, x: Float[Tensor, "*leading d"]) -> Float[Tensor, "*leading d"]:
        """x / sqrt(mean(x²) + eps) over the last axis, in float32, returned in x's dtype."""
        return _normalize(self, x).to(x.dtype)


class RMSNorm(RMSNormPre):
    """RMSNorm with weight `w`, kept in float32 (Gemma stores 1 + w, which bfloat16 would
    round). The multiply happens in float32 then casts (Gemma's order), or casts first
    (Llama's order) when cfg.rms_norm_cast_before_weight is set."""

    def __init__(self, cfg: ConfigOrDict, length: int | None = None):
        super().__init__(cfg, length)
        self.length = self.cfg.d_model if length is None else length
        # float32 like the norm arithmetic: Gemma stores 1 + w, which bfloat16 would round.
        self.w = nn.Parameter(torch.ones(self.length, dtype=torch.float32))

    def forward(self, x: Float[Tensor, "*leading d"]) -> Float[Tensor, "*leading d"]:
        """w * x / sqrt(mean(x²) + eps) over the last axis, returned in x's dtype."""
        if self.cfg.rms_norm_cast_before_weight:
            return self.w.to(x.dtype) * _normalize(self, x).to(x.dtype)
        return (_normalize(self, x) * self.w.float()).to(x.dtype)
