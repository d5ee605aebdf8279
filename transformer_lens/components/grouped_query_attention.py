"""GroupedQueryAttention: keys/values stored with n_key_value_heads heads.

The forward is `Attention`'s; only the storage names differ (`_W_K`, `_W_V`, `_b_K`,
`_b_V`, as in classic state dicts), and `W_K`/`W_V`/`b_K`/`b_V` are read-only properties
expanded to one entry per query head (query head h reads key/value head h // group).
"""

from jaxtyping import Float
from torch import Tensor

from transformer_lens.components.attention import Attention


class GroupedQueryAttention(Attention):
    key_value_names = ("_W_K", "_b_K", "_W_V", "_b_V")

    @property
    def W_K(self) -> Float[Tensor, "head_index d_model d_head"]:
        return self._per_query_head(self.stored_key_value()[0])

    @property
    def W_V(self) -> Float[Tensor, "head_index d_model d_head"]:
        return self._per_query_head(self.stored_key_value()[2])

    @property
    def b_K(self) -> Float[Tensor, "head_index d_head"]:
        return self._per_query_head(self.stored_key_value()[1])

    @property
    def b_V(self) -> Float[Tensor, "head_index d_head"]:
        return self._per_query_head(self.stored_key_value()[3])
