"""MLPFactory: build the MLP variant a config asks for."""

from transformer_lens.components.mlps.can_be_used_as_mlp import CanBeUsedAsMLP
from transformer_lens.components.mlps.gated_mlp import GatedMLP
from transformer_lens.components.mlps.gated_mlp_4bit import GatedMLP4Bit
from transformer_lens.components.mlps.mlp import MLP
from transformer_lens.components.mlps.moe import MoE
from transformer_lens.HookedTransformerConfig import ConfigOrDict, HookedTransformerConfig


class MLPFactory:
    """Classic's namespace for `create_mlp`."""

    @staticmethod
    def create_mlp(cfg: ConfigOrDict) -> CanBeUsedAsMLP:
        """MoE when cfg.num_experts is set, else GatedMLP when cfg.gated_mlp (GatedMLP4Bit
        under load_in_4bit), else MLP.

        MoE and GatedMLP4Bit are not supported yet in this fork: constructing them raises.
        Classic's GPT-OSS expert layer (original_architecture "GptOssForCausalLM") has no
        counterpart here, so those configs get the same MoE error.
        """
        cfg = HookedTransformerConfig.unwrap(cfg)
        if cfg.num_experts:
            return MoE(cfg)
        if cfg.gated_mlp:
            return GatedMLP4Bit(cfg) if cfg.load_in_4bit else GatedMLP(cfg)
        return MLP(cfg)
