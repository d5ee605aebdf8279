"""Mixture-of-experts names kept from classic: the expert `MoEGatedMLP`, and `MoE`, whose
routing is not supported yet (constructing one raises NotImplementedError)."""

from jaxtyping import Float
from torch import Tensor, nn

from transformer_lens._errors import ClassicAssertionError
from transformer_lens.components.mlps.activation import resolve_activation
from transformer_lens.components.mlps.can_be_used_as_mlp import CanBeUsedAsMLP
from transformer_lens.hook_points import HookPoint
from transformer_lens.HookedTransformerConfig import ConfigOrDict, HookedTransformerConfig

Tokens = Float[Tensor, "*tokens d_model"]


class MoEGatedMLP(nn.Module):
    """One expert, as in Mixtral: W_out(act(W_gate(x)) * W_in(x)), three bias-free
    nn.Linear layers (so the state dict has `W_in.weight` etc., as classic's)."""

    def __init__(self, cfg: ConfigOrDict):
        super().__init__()
        self.cfg = HookedTransformerConfig.unwrap(cfg)
        if self.cfg.d_mlp is None or self.cfg.act_fn is None:
            raise ValueError(
                f"MoEGatedMLP needs cfg.d_mlp and cfg.act_fn; got d_mlp={self.cfg.d_mlp}, "
                f"act_fn={self.cfg.act_fn!r}"
            )
        self.d_mlp = self.cfg.d_mlp
        d_model, dtype = self.cfg.d_model, self.cfg.dtype
        self.W_in = nn.Linear(d_model, self.d_mlp, bias=False, dtype=dtype)
        self.W_out = nn.Linear(self.d_mlp, d_model, bias=False, dtype=dtype)
        self.W_gate = nn.Linear(d_model, self.d_mlp, bias=False, dtype=dtype)
        self.hook_gate = HookPoint()
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()
        self.act_fn = resolve_activation(self.cfg.act_fn)

    def forward(self, x: Tokens) -> Tokens:
        """W_out(act(W_gate(x)) * W_in(x)) over the last axis; any leading shape (the MoE
        passes its tokens flattened to [tokens, d_model])."""
        gate = self.hook_gate(self.W_gate(x))
        pre = self.hook_pre(self.W_in(x))
        return self.W_out(self.hook_post(self.act_fn(gate) * pre))


class MoE(CanBeUsedAsMLP):
    """Mixture-of-experts MLP (Mixtral): not supported yet. The constructor checks the
    config as classic does, then raises NotImplementedError."""

    def __init__(self, cfg: ConfigOrDict):
        super().__init__(cfg)
        num_experts, per_token = self.cfg.num_experts, self.cfg.experts_per_token
        if not num_experts or not per_token:
            raise ClassicAssertionError(
                f"MoE needs cfg.num_experts and cfg.experts_per_token; got num_experts="
                f"{num_experts}, experts_per_token={per_token}"
            )
        if per_token > num_experts:
            raise ClassicAssertionError(
                f"experts_per_token ({per_token}) must not exceed num_experts ({num_experts})"
            )
        raise NotImplementedError(
            "Mixture-of-experts MLPs (Mixtral, OLMoE) are not supported yet in this fork"
        )
