"""Learned absolute position embedding (GPT-2 style)."""

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig


class PosEmbed(nn.Module):
    """Learned position embedding W_pos [n_ctx, d_model]."""

    def __init__(self, cfg: HookedTransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model, dtype=cfg.dtype))

    def forward(self, positions: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        """`positions` already counts from each row's first real token (left padding)."""
        return F.embedding(positions, self.W_pos)
