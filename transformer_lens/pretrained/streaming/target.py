"""What the streamer needs of the model it fills. HookedTransformer provides it: the
streamer reads parameters and the config, and asks the model itself for the changes only
the model knows how to make (its folded norms, a tied unembedding, which layouts a
parameter may take)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from torch import Tensor, nn

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig


@runtime_checkable
class LoadTarget(Protocol):
    cfg: HookedTransformerConfig

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, nn.Parameter]]: ...

    def _use_folded_norms(self) -> None:
        """fold_ln moved the norms' weights into the matrices after them: the norms become
        their folded kind (LN -> LNPre, RMS -> RMSPre), with no weights of their own."""

    def _tie_unembedding(self) -> None:
        """W_U becomes a view of W_E's storage (the checkpoint holds the matrix once)."""

    def _may_take_layout(self, key: str, tensor: Tensor) -> bool:
        """Whether parameter `key` may become `tensor` as it is, in a layout other than the
        parameter's own (W_U also multiplies from Hugging Face's layout without a copy)."""
