"""Token embedding: tokens [batch, pos] -> residual [batch, pos, d_model]."""

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from transformer_lens.components.layer_norm import LayerNorm
from transformer_lens.HookedTransformerConfig import HookedTransformerConfig


class Embed(nn.Module):
    def __init__(self, cfg: HookedTransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model, dtype=cfg.dtype))
        # Some models (BLOOM) normalise right after the embedding.
        self.ln = LayerNorm(cfg) if cfg.post_embedding_ln else None

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        embedded = F.embedding(tokens, self.W_E)
        return self.ln(embedded) if self.ln is not None else embedded
