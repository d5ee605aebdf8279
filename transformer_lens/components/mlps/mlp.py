"""The plain MLP: post = act(x @ W_in + b_in); out = post @ W_out + b_out."""

import torch
from jaxtyping import Float
from torch import Tensor, nn

from transformer_lens.components._bias import unless_zero
from transformer_lens.components._layout import matrix_parameter
from transformer_lens.components._linear import linear
from transformer_lens.components.layer_norm import LayerNorm
from transformer_lens.components.mlps.activation import resolve_activation
from transformer_lens.hook_points import HookPoint
from transformer_lens.HookedTransformerConfig import HookedTransformerConfig


class MLP(nn.Module):
    """Plain MLP: W_in [d_model, d_mlp], b_in, activation, W_out [d_mlp, d_model], b_out
    (with a LayerNorm after the activation for "solu_ln")."""

    def __init__(self, cfg: HookedTransformerConfig):
        super().__init__()
        assert cfg.d_mlp is not None and cfg.act_fn is not None
        self.cfg = cfg
        self.W_in = matrix_parameter(cfg.d_model, cfg.d_mlp, cfg.dtype)
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp, dtype=cfg.dtype))
        self.W_out = matrix_parameter(cfg.d_mlp, cfg.d_model, cfg.dtype)
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model, dtype=cfg.dtype))
        self.act_fn = resolve_activation(cfg.act_fn)
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()
        if cfg.act_fn == "solu_ln":
            self.hook_mid = HookPoint()
            self.ln = LayerNorm(cfg, cfg.d_mlp)

    def _activate(self, pre: Tensor) -> Tensor:
        if self.cfg.act_fn == "solu_ln":
            return self.ln(self.hook_mid(self.act_fn(pre)))
        return self.act_fn(pre)

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        """act(x @ W_in + b_in) @ W_out + b_out, [batch, pos, d_model] -> same shape."""
        pre = self.hook_pre(linear(x, self.W_in.T, unless_zero(self.b_in)))
        post = self.hook_post(self._activate(pre))
        return linear(post, self.W_out.T, unless_zero(self.b_out))
