"""Model components, importable by their classic names."""

from transformer_lens.components.abstract_attention import AbstractAttention
from transformer_lens.components.attention import Attention
from transformer_lens.components.embed import Embed
from transformer_lens.components.grouped_query_attention import GroupedQueryAttention
from transformer_lens.components.layer_norm import LayerNorm, LayerNormPre
from transformer_lens.components.mlps.gated_mlp import GatedMLP
from transformer_lens.components.mlps.mlp import MLP
from transformer_lens.components.mlps.moe import MoE
from transformer_lens.components.pos_embed import PosEmbed
from transformer_lens.components.rms_norm import RMSNorm, RMSNormPre
from transformer_lens.components.transformer_block import TransformerBlock
from transformer_lens.components.unembed import Unembed

__all__ = [
    "AbstractAttention",
    "Attention",
    "Embed",
    "GatedMLP",
    "GroupedQueryAttention",
    "LayerNorm",
    "LayerNormPre",
    "MLP",
    "MoE",
    "PosEmbed",
    "RMSNorm",
    "RMSNormPre",
    "TransformerBlock",
    "Unembed",
]
