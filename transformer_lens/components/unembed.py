"""Unembedding: residual [batch, pos, d_model] -> logits [batch, pos, d_vocab_out]."""

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from transformer_lens.components._layout import matrix_parameter
from transformer_lens.HookedTransformerConfig import HookedTransformerConfig


class Unembed(nn.Module):
    def __init__(self, cfg: HookedTransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.W_U = matrix_parameter(cfg.d_model, cfg.d_vocab_out, cfg.dtype)
        self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab_out, dtype=cfg.dtype))

    def forward(
        self, residual: Float[Tensor, "batch pos d_model"]
    ) -> Float[Tensor, "batch pos d_vocab_out"]:
        return F.linear(residual, self.W_U.T, self.b_U)
