"""CanBeUsedAsMLP: the base class of every module that can sit in a block's MLP slot.

Classic TransformerLens (and SAELens, which imports it) types MLP slots by this class. It
holds what the MLP variants share: the config, `d_mlp`, and the activation, with SoLU's
`hook_mid` and LayerNorm `ln` when act_fn is "solu_ln".
"""

from collections.abc import Callable

from jaxtyping import Float
from torch import Tensor, nn

from transformer_lens.components.layer_norm import LayerNorm, LayerNormPre
from transformer_lens.components.mlps.activation import resolve_activation
from transformer_lens.hook_points import HookPoint
from transformer_lens.HookedTransformerConfig import ConfigOrDict, HookedTransformerConfig


class CanBeUsedAsMLP(nn.Module):
    """An MLP-like module: `cfg`, `d_mlp`, and (after `select_activation_function`) `act_fn`;
    `hook_mid` and `ln` exist only for layer-norm activations ("solu_ln")."""

    cfg: HookedTransformerConfig
    d_mlp: int
    act_fn: Callable[[Tensor], Tensor]
    hook_mid: HookPoint
    ln: nn.Module

    def __init__(self, cfg: ConfigOrDict):
        super().__init__()
        self.cfg = HookedTransformerConfig.unwrap(cfg)
        if self.cfg.d_mlp is None:
            raise ValueError(
                f"{type(self).__name__} needs cfg.d_mlp, which is None (attn_only configs have "
                "no MLP)"
            )
        self.d_mlp = self.cfg.d_mlp

    def select_activation_function(self) -> None:
        """Set `act_fn` from cfg.act_fn; for "solu_ln" also add `hook_mid` and the LayerNorm
        `ln` over d_mlp (LayerNormPre once the model's norms are folded, as in classic)."""
        if self.cfg.act_fn is None:
            raise ValueError(f"{type(self).__name__} needs cfg.act_fn, which is None")
        self.act_fn = resolve_activation(self.cfg.act_fn)
        if self.cfg.is_layer_norm_activation():
            self.hook_mid = HookPoint()
            folded = self.cfg.normalization_type != "LN"
            self.ln = (LayerNormPre if folded else LayerNorm)(self.cfg, self.d_mlp)

    def _activate(self, pre: Float[Tensor, "batch pos d_mlp"]) -> Float[Tensor, "batch pos d_mlp"]:
        """act_fn(pre), then hook_mid and ln for "solu_ln". Gated MLPs multiply this by the
        linear branch, so there the LayerNorm counts as part of the activation (classic's
        GatedMLP dropped W_in and b_in under "solu_ln")."""
        if self.cfg.is_layer_norm_activation():
            return self.ln(self.hook_mid(self.act_fn(pre)))
        return self.act_fn(pre)

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        """The MLP output for the residual x; each subclass defines it."""
        raise NotImplementedError(f"{type(self).__name__} does not define forward")
