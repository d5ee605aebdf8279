"""Unembedding: residual [batch, pos, d_model] -> logits [batch, pos, d_vocab_out]."""

import torch
from jaxtyping import Float
from torch import Tensor, nn

from transformer_lens.components._bias import unless_zero
from transformer_lens.components._layout import matrix_parameter
from transformer_lens.components._linear import linear
from transformer_lens.components.embed import Embed
from transformer_lens.HookedTransformerConfig import ConfigOrDict, HookedTransformerConfig


def _row_major_is_faster(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether W_U [d_model, d_vocab_out] multiplies faster stored row-major (classic
    TransformerLens's layout) than transposed (HF's [d_vocab_out, d_model]). Measured on CPU
    for this wide matrix (BENCHMARKS.md): row-major is 4-16% faster in float32, but
    1.25-1.8x slower in bfloat16 and 50-80x slower in float16; elsewhere HF's layout."""
    return device.type == "cpu" and dtype in (torch.float32, torch.float64)


class Unembed(nn.Module):
    """Unembedding W_U [d_model, d_vocab_out] and bias b_U [d_vocab_out]."""

    def __init__(self, cfg: ConfigOrDict):
        super().__init__()
        self.cfg = cfg = HookedTransformerConfig.unwrap(cfg)
        if _row_major_is_faster(cfg.dtype, torch.device("cpu")):  # built on the CPU
            self.W_U = nn.Parameter(torch.empty(cfg.d_model, cfg.d_vocab_out, dtype=cfg.dtype))
        else:
            self.W_U = matrix_parameter(cfg.d_model, cfg.d_vocab_out, cfg.dtype)
        self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab_out, dtype=cfg.dtype))

    def forward(
        self, residual: Float[Tensor, "batch pos d_model"]
    ) -> Float[Tensor, "batch pos d_vocab_out"]:
        """Logits residual @ W_U + b_U: [batch, pos, d_model] -> [batch, pos, d_vocab_out]."""
        return linear(residual, self.W_U.T, unless_zero(self.b_U))

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
        """Give W_U storage of its own (same values), in the fastest layout."""
        weight = self.W_U.detach()
        if _row_major_is_faster(weight.dtype, weight.device):
            own = weight.clone(memory_format=torch.contiguous_format)
        else:
            own = weight.T.clone(memory_format=torch.contiguous_format).T
        self.W_U = nn.Parameter(own, requires_grad=self.W_U.requires_grad)

    def use_fastest_layout(self) -> None:
        """Store W_U in the layout its device and dtype multiply fastest: row-major for
        float32 on CPU, HF's transposed layout otherwise. Values, the Parameter object and
        the public shape stay; memory is copied only when the layout changes."""
        weight = self.W_U.detach()
        if not Unembed.accepts_layout(weight):
            return  # an unusual layout someone assigned: leave it alone
        row_major = _row_major_is_faster(weight.dtype, weight.device)
        if weight.is_contiguous() if row_major else weight.T.is_contiguous():
            return
        self.W_U.data = weight.contiguous() if row_major else weight.T.contiguous().T

    @staticmethod
    def accepts_layout(weight: Tensor) -> bool:
        """Whether a [d_model, d_vocab_out] tensor reaches the matmul without a copy:
        row-major or HF's transposed layout."""
        return weight.ndim == 2 and (weight.is_contiguous() or weight.T.is_contiguous())
