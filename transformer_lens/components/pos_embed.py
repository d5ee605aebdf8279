"""Learned absolute position embedding (GPT-2 style)."""

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from transformer_lens.HookedTransformerConfig import ConfigOrDict, HookedTransformerConfig


class PosEmbed(nn.Module):
    """Learned position embedding W_pos [n_ctx, d_model]."""

    def __init__(self, cfg: ConfigOrDict):
        super().__init__()
        self.cfg = cfg = HookedTransformerConfig.unwrap(cfg)
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model, dtype=cfg.dtype))

    def forward(
        self,
        tokens: Int[Tensor, "batch pos"],
        past_kv_pos_offset: int = 0,
        attention_mask: Int[Tensor, "batch offset_pos"] | None = None,
    ) -> Float[Tensor, "batch pos d_model"]:
        """Classic's call: the embedding of the positions of `tokens` [batch, pos], which
        follow past_kv_pos_offset cached ones. With attention_mask [batch, past + pos],
        positions count from each row's first real token and padding gets zeros."""
        batch, pos = tokens.shape
        if attention_mask is None:
            positions = torch.arange(past_kv_pos_offset, past_kv_pos_offset + pos)
            return self.embed_positions(positions.to(self.W_pos.device).expand(batch, pos))
        if attention_mask.shape[-1] != past_kv_pos_offset + pos:
            raise ValueError(
                f"attention_mask covers {attention_mask.shape[-1]} positions; expected "
                f"past_kv_pos_offset + pos = {past_kv_pos_offset + pos}"
            )
        counted = (attention_mask.cumsum(dim=-1) - 1).clamp(min=0)[:, past_kv_pos_offset:]
        real = attention_mask[:, past_kv_pos_offset:].bool().unsqueeze(-1)
        return self.embed_positions(counted.to(self.W_pos.device)) * real

    def embed_positions(
        self, positions: Int[Tensor, "batch pos"]
    ) -> Float[Tensor, "batch pos d_model"]:
        """W_pos rows at `positions`, which already count from each row's first real token."""
        return F.embedding(positions, self.W_pos)
