"""Stacked weight views of a HookedTransformer (W_Q, W_K, ..., QK, OV) as a mixin.

Every property stacks the per-layer parameters into a new tensor, so reading one copies;
they are for analysis, never used by the forward pass. Grouped K/V are expanded to one
entry per query head (query head h reads key/value head h // group).
"""

from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from transformer_lens.FactoredMatrix import FactoredMatrix
from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.utils import composition_scores


class WeightPropertiesMixin:
    """HookedTransformer's weight views: W_E, W_U, b_U, W_pos, the per-layer weights stacked
    along a new first axis (W_Q ... b_out; fresh copies, so editing one leaves the model
    alone), the QK/OV circuits, and analyses built on them."""

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
        """Token embedding [d_vocab, d_model] (the parameter itself, not a copy)."""
        return self.embed.W_E

    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab_out"]:
        """Unembedding [d_model, d_vocab_out] (the parameter itself, not a copy)."""
        return self.unembed.W_U

    @property
    def b_U(self) -> Float[Tensor, " d_vocab_out"]:
        """Unembedding bias [d_vocab_out] (the parameter itself)."""
        return self.unembed.b_U

    @property
    def W_pos(self) -> Float[Tensor, "n_ctx d_model"]:
        """Learned position embedding [n_ctx, d_model] (the parameter itself); AttributeError
        on models without one (rotary)."""
        if not hasattr(self, "pos_embed"):
            raise AttributeError(
                f"W_pos does not exist: positional_embedding_type is "
                f"{self.cfg.positional_embedding_type!r}, which has no learned position table"
            )
        return self.pos_embed.W_pos

    @property
    def W_E_pos(self) -> Float[Tensor, "d_vocab_plus_n_ctx d_model"]:
        """W_E and W_pos concatenated along the first axis: [d_vocab + n_ctx, d_model]."""
        return torch.cat([self.W_E, self.W_pos], dim=0)

    @property
    def W_Q(self) -> Float[Tensor, "layer head_index d_model d_head"]:
        """Query weights of every layer, [layer, head_index, d_model, d_head]."""
        return self._stack("attn.W_Q")

    @property
    def W_K(self) -> Float[Tensor, "layer head_index d_model d_head"]:
        """Key weights of every layer, [layer, head_index, d_model, d_head]: one entry per
        query head, so on a grouped model each key/value head appears once per query head that
        reads it (stored as [kv_head_index, d_model, d_head] per layer)."""
        return self._stack("attn.W_K")

    @property
    def W_V(self) -> Float[Tensor, "layer head_index d_model d_head"]:
        """Value weights of every layer, [layer, head_index, d_model, d_head]: per query head,
        key/value heads repeated on a grouped model as for W_K."""
        return self._stack("attn.W_V")

    @property
    def W_O(self) -> Float[Tensor, "layer head_index d_head d_model"]:
        """Output weights of every layer, [layer, head_index, d_head, d_model]."""
        return self._stack("attn.W_O")

    @property
    def b_Q(self) -> Float[Tensor, "layer head_index d_head"]:
        """Query biases of every layer, [layer, head_index, d_head]."""
        return self._stack("attn.b_Q")

    @property
    def b_K(self) -> Float[Tensor, "layer head_index d_head"]:
        """Key biases of every layer, [layer, head_index, d_head]: per query head, repeated
        on a grouped model as for W_K."""
        return self._stack("attn.b_K")

    @property
    def b_V(self) -> Float[Tensor, "layer head_index d_head"]:
        """Value biases of every layer, [layer, head_index, d_head]: per query head, repeated
        on a grouped model as for W_K."""
        return self._stack("attn.b_V")

    @property
    def b_O(self) -> Float[Tensor, "layer d_model"]:
        """Attention output biases of every layer, [layer, d_model]."""
        return self._stack("attn.b_O")

    @property
    def W_in(self) -> Float[Tensor, "layer d_model d_mlp"]:
        """MLP input weights of every layer, [layer, d_model, d_mlp] (the linear, ungated
        branch on gated MLPs)."""
        return self._stack("mlp.W_in")

    @property
    def W_gate(self) -> Float[Tensor, "layer d_model d_mlp"] | None:
        """Gate weights of every layer, [layer, d_model, d_mlp], the branch the activation
        is applied to; None unless cfg.gated_mlp."""
        return self._stack("mlp.W_gate") if self.cfg.gated_mlp else None

    @property
    def W_out(self) -> Float[Tensor, "layer d_mlp d_model"]:
        """MLP output weights of every layer, [layer, d_mlp, d_model]."""
        return self._stack("mlp.W_out")

    @property
    def b_in(self) -> Float[Tensor, "layer d_mlp"]:
        """MLP input biases of every layer, [layer, d_mlp]."""
        return self._stack("mlp.b_in")

    @property
    def b_out(self) -> Float[Tensor, "layer d_model"]:
        """MLP output biases of every layer, [layer, d_model]."""
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
        """Labels "L{layer}H{head}" of every query head, layer by layer."""
        return [
            f"L{layer}H{head}"
            for layer in range(self.cfg.n_layers)
            for head in range(self.cfg.n_heads)
        ]

    def accumulated_bias(
        self, layer: int, mlp_input: bool = False, include_mlp_biases: bool = True
    ) -> Float[Tensor, " d_model"]:
        """The biases written to the residual stream before block `layer` (0..n_layers):
        b_O, and b_out unless include_mlp_biases is False, of every block below it. With
        mlp_input, also b_O of block `layer`, whose attention writes before its MLP reads
        (except in parallel blocks, where the MLP reads resid_pre)."""
        cfg = self.cfg
        if not 0 <= layer <= cfg.n_layers:
            raise ValueError(f"layer must be in [0, {cfg.n_layers}]; got {layer}")
        if mlp_input and (layer == cfg.n_layers or cfg.attn_only):
            raise ValueError(f"mlp_input needs a block with an MLP; got layer {layer}")
        total = torch.zeros(cfg.d_model, dtype=cfg.dtype, device=self.W_U.device)
        for block in self.blocks[:layer]:
            total = total + block.attn.b_O
            if include_mlp_biases and not cfg.attn_only:
                total = total + block.mlp.b_out
        if mlp_input and not cfg.parallel_attn_mlp:
            total = total + self.blocks[layer].attn.b_O
        return total

    def all_composition_scores(self, mode: str) -> Float[Tensor, "layer1 head1 layer2 head2"]:
        """Composition scores of every head pair: how much head (l1, h1)'s OV output feeds
        the queries ("Q"), keys ("K") or values ("V") of head (l2, h2), as
        ||OV1 @ M2||_F / (||OV1||_F ||M2||_F). Zero unless l1 < l2. Grouped K/V weights are
        expanded per query head, so every query head gets its own row and column."""
        readers = {"Q": lambda: self.QK, "K": lambda: self.QK.T, "V": lambda: self.OV}
        if mode not in readers:
            raise ValueError(f"mode must be 'Q', 'K' or 'V'; got {mode!r}")
        scores = composition_scores(self.OV, readers[mode](), broadcast_dims=True)
        layers = torch.arange(self.cfg.n_layers, device=scores.device)
        earlier = (layers[:, None, None, None] < layers[None, None, :, None]).expand_as(scores)
        return torch.where(earlier, scores, torch.zeros_like(scores))

    def tokens_to_residual_directions(
        self, tokens: str | int | list[int] | Int[Tensor, "..."]
    ) -> Float[Tensor, "... d_model"]:
        """The unembedding direction W_U[:, token] of each token: [d_model] for one token
        (an int, a str, a 0-d tensor), [..., d_model] for a tensor or list of tokens. A str
        must be a single token of the attached tokenizer."""
        if isinstance(tokens, str):
            tokens = self._single_token(tokens)
        if isinstance(tokens, int):
            return self.W_U[:, tokens]
        index = torch.as_tensor(tokens, device=self.W_U.device)
        if index.is_floating_point():
            raise ValueError(f"Token ids must be integers; got dtype {index.dtype}")
        return self.W_U.T[index.long()]

    def _single_token(self, text: str) -> int:
        if getattr(self, "tokenizer", None) is None:
            raise ValueError(f"Cannot look up the token {text!r}: no tokenizer is attached")
        to_single_token = getattr(self, "to_single_token", None)
        if to_single_token is None:
            raise NotImplementedError(
                f"Cannot look up the token {text!r}: this model has no to_single_token; "
                "pass the token id instead"
            )
        return int(to_single_token(text))
