"""Stacked weight views of a HookedTransformer (W_Q, W_K, ..., QK, OV) as a mixin.

Every property stacks the per-layer parameters into a new tensor, so reading one copies;
they are for analysis, never used by the forward pass. Grouped K/V are expanded to one
entry per query head (query head h reads key/value head h // group).
"""

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from transformer_lens.FactoredMatrix import FactoredMatrix
from transformer_lens.HookedTransformerConfig import HookedTransformerConfig


class WeightPropertiesMixin:
    # Provided by HookedTransformer.
    cfg: HookedTransformerConfig
    blocks: Any
    embed: Any
    unembed: Any
    pos_embed: Any

    def _stack(self, path: str) -> Tensor:
        tensors = []
        for block in self.blocks:
            module: Any = block
            for part in path.split("."):
                module = getattr(module, part)
            tensors.append(module)
        return torch.stack(tensors, dim=0)

    @property
    def W_E(self) -> Float[Tensor, "d_vocab d_model"]:
        return self.embed.W_E

    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab_out"]:
        return self.unembed.W_U

    @property
    def b_U(self) -> Float[Tensor, " d_vocab_out"]:
        return self.unembed.b_U

    @property
    def W_pos(self) -> Float[Tensor, "n_ctx d_model"]:
        if not hasattr(self, "pos_embed"):
            raise AttributeError(
                f"W_pos does not exist: positional_embedding_type is "
                f"{self.cfg.positional_embedding_type!r}, which has no learned position table"
            )
        return self.pos_embed.W_pos

    @property
    def W_E_pos(self) -> Float[Tensor, "d_vocab_plus_n_ctx d_model"]:
        return torch.cat([self.W_E, self.W_pos], dim=0)

    @property
    def W_Q(self) -> Float[Tensor, "layer head_index d_model d_head"]:
        return self._stack("attn.W_Q")

    @property
    def W_K(self) -> Float[Tensor, "layer head_index d_model d_head"]:
        return self._stack("attn.W_K")

    @property
    def W_V(self) -> Float[Tensor, "layer head_index d_model d_head"]:
        return self._stack("attn.W_V")

    @property
    def W_O(self) -> Float[Tensor, "layer head_index d_head d_model"]:
        return self._stack("attn.W_O")

    @property
    def b_Q(self) -> Float[Tensor, "layer head_index d_head"]:
        return self._stack("attn.b_Q")

    @property
    def b_K(self) -> Float[Tensor, "layer head_index d_head"]:
        return self._stack("attn.b_K")

    @property
    def b_V(self) -> Float[Tensor, "layer head_index d_head"]:
        return self._stack("attn.b_V")

    @property
    def b_O(self) -> Float[Tensor, "layer d_model"]:
        return self._stack("attn.b_O")

    @property
    def W_in(self) -> Float[Tensor, "layer d_model d_mlp"]:
        return self._stack("mlp.W_in")

    @property
    def W_gate(self) -> Float[Tensor, "layer d_model d_mlp"] | None:
        return self._stack("mlp.W_gate") if self.cfg.gated_mlp else None

    @property
    def W_out(self) -> Float[Tensor, "layer d_mlp d_model"]:
        return self._stack("mlp.W_out")

    @property
    def b_in(self) -> Float[Tensor, "layer d_mlp"]:
        return self._stack("mlp.b_in")

    @property
    def b_out(self) -> Float[Tensor, "layer d_model"]:
        return self._stack("mlp.b_out")

    @property
    def QK(self) -> FactoredMatrix:
        """[layer, head_index, d_model, d_model] query-key circuits."""
        return FactoredMatrix(self.W_Q, self.W_K.transpose(-2, -1))

    @property
    def OV(self) -> FactoredMatrix:
        """[layer, head_index, d_model, d_model] output-value circuits."""
        return FactoredMatrix(self.W_V, self.W_O)

    def all_head_labels(self) -> list[str]:
        return [
            f"L{layer}H{head}"
            for layer in range(self.cfg.n_layers)
            for head in range(self.cfg.n_heads)
        ]
