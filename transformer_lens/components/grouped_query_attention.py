"""GroupedQueryAttention: keys/values stored with n_key_value_heads heads.

The forward is `Attention`'s; only the storage names differ (`_W_K`, `_W_V`, `_b_K`,
`_b_V`, as in classic state dicts), and `W_K`/`W_V`/`b_K`/`b_V` are read-only properties
expanded to one entry per query head (query head h reads key/value head h // group).
"""

from jaxtyping import Float
from torch import Tensor

from transformer_lens._errors import ClassicAssertionError
from transformer_lens.components.attention import Attention
from transformer_lens.HookedTransformerConfig import ConfigOrDict, HookedTransformerConfig


class GroupedQueryAttention(Attention):
    """Attention storing keys/values as _W_K, _b_K, _W_V, _b_V [kv_head_index, ...]; W_K,
    W_V, b_K, b_V are read-only views expanded per query head."""

    key_value_names = ("_W_K", "_b_K", "_W_V", "_b_V")

    def __init__(self, cfg: ConfigOrDict, attn_type: str = "global", layer_id: int = 0):
        cfg = HookedTransformerConfig.unwrap(cfg)
        if cfg.n_key_value_heads is None:
            raise ClassicAssertionError(
                "GroupedQueryAttention needs cfg.n_key_value_heads; it is None (use Attention "
                "for multi-head attention)"
            )
        super().__init__(cfg, attn_type, layer_id)

    @property
    def W_K(self) -> Float[Tensor, "head_index d_model d_head"]:
        """Key weights per query head [head_index, d_model, d_head], a copy of _W_K
        [kv_head_index, d_model, d_head] with each head repeated group_size times."""
        return self._per_query_head(self.stored_key_value()[0])

    @property
    def W_V(self) -> Float[Tensor, "head_index d_model d_head"]:
        """Value weights per query head [head_index, d_model, d_head], expanded from _W_V."""
        return self._per_query_head(self.stored_key_value()[2])

    @property
    def b_K(self) -> Float[Tensor, "head_index d_head"]:
        """Key biases per query head [head_index, d_head], expanded from _b_K."""
        return self._per_query_head(self.stored_key_value()[1])

    @property
    def b_V(self) -> Float[Tensor, "head_index d_head"]:
        """Value biases per query head [head_index, d_head], expanded from _b_V."""
        return self._per_query_head(self.stored_key_value()[3])
