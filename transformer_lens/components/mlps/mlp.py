"""The plain MLP: post = act(x @ W_in + b_in); out = post @ W_out + b_out."""

import torch
from jaxtyping import Float
from torch import Tensor, nn

from transformer_lens.components._bias import unless_zero
from transformer_lens.components._layout import matrix_parameter
from transformer_lens.components._linear import linear
from transformer_lens.components.mlps.can_be_used_as_mlp import CanBeUsedAsMLP
from transformer_lens.hook_points import HookPoint
from transformer_lens.HookedTransformerConfig import ConfigOrDict


class MLP(CanBeUsedAsMLP):
    """Plain MLP: W_in [d_model, d_mlp], b_in, activation, W_out [d_mlp, d_model], b_out
    (with a LayerNorm after the activation for "solu_ln")."""

    def __init__(self, cfg: ConfigOrDict):
        super().__init__(cfg)
        self.select_activation_function()
        d_model, dtype = self.cfg.d_model, self.cfg.dtype
        self.W_in = matrix_parameter(d_model, self.d_mlp, dtype)
        self.b_in = nn.Parameter(torch.zeros(self.d_mlp, dtype=dtype))
        self.W_out = matrix_parameter(self.d_mlp, d_model, dtype)
        self.b_out = nn.Parameter(torch.zeros(d_model, dtype=dtype))
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        """act(x @ W_in + b_in) @ W_out + b_out, [batch, pos, d_model] -> same shape."""
        pre = self.hook_pre(linear(x, self.W_in.T, unless_zero(self.b_in)))
        post = self.hook_post(self._activate(pre))
        return linear(post, self.W_out.T, unless_zero(self.b_out))
