"""Token embedding: tokens [batch, pos] -> residual [batch, pos, d_model]."""

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from transformer_lens.components.layer_norm import LayerNorm
from transformer_lens.HookedTransformerConfig import ConfigOrDict, HookedTransformerConfig


class Embed(nn.Module):
    """Token embedding W_E [d_vocab, d_model], followed by a LayerNorm when
    cfg.post_embedding_ln is set."""

    def __init__(self, cfg: ConfigOrDict):
        super().__init__()
        self.cfg = cfg = HookedTransformerConfig.unwrap(cfg)
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model, dtype=cfg.dtype))
        # Some models (BLOOM) normalise right after the embedding.
        self.ln = LayerNorm(cfg) if cfg.post_embedding_ln else None

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        """The rows of W_E for the tokens (then the LayerNorm, if any): [batch, pos] ->
        [batch, pos, d_model]."""
        embedded = F.embedding(tokens, self.W_E)
        return self.ln(embedded) if self.ln is not None else embedded
