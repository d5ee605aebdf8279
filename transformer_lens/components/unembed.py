"""Unembedding: residual [batch, pos, d_model] -> logits [batch, pos, d_vocab_out]."""

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from transformer_lens.components._bias import unless_zero
from transformer_lens.components._layout import matrix_parameter
from transformer_lens.components.embed import Embed
from transformer_lens.HookedTransformerConfig import HookedTransformerConfig


class Unembed(nn.Module):
    """Unembedding W_U [d_model, d_vocab_out] and bias b_U [d_vocab_out]."""

    def __init__(self, cfg: HookedTransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.W_U = matrix_parameter(cfg.d_model, cfg.d_vocab_out, cfg.dtype)
        self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab_out, dtype=cfg.dtype))

    def forward(
        self, residual: Float[Tensor, "batch pos d_model"]
    ) -> Float[Tensor, "batch pos d_vocab_out"]:
        """Logits residual @ W_U + b_U: [batch, pos, d_model] -> [batch, pos, d_vocab_out]."""
        return F.linear(residual, self.W_U.T, unless_zero(self.b_U))

    # Tied embeddings (GPT-2, Llama-3.2, small Qwen2): W_U can be the transpose of W_E's own
    # storage, so an unprocessed model holds the matrix once, as Hugging Face does. Anything
    # that would make W_U differ from W_E^T unties first.
    def tie_to(self, embed: Embed) -> None:
        """Make W_U a transposed view of embed.W_E's storage, so the matrix is held once."""
        self.W_U = nn.Parameter(embed.W_E.detach().T, requires_grad=embed.W_E.requires_grad)

    def is_tied_to(self, embed: Embed) -> bool:
        """Whether W_U shares its storage with embed.W_E."""
        return self.W_U.untyped_storage().data_ptr() == embed.W_E.untyped_storage().data_ptr()

    def untie(self) -> None:
        """Give W_U storage of its own (same values, same [d_vocab_out, d_model] layout)."""
        own = self.W_U.detach().T.clone().T
        self.W_U = nn.Parameter(own, requires_grad=self.W_U.requires_grad)
