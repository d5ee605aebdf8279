"""Classic HookedTransformer entry points to the first residual stream: `input_to_embed`,
`get_residual`, `get_pos_offset`, `move_model_modules_to_device`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from transformer_lens._errors import ClassicAssertionError
from transformer_lens._model_inputs import check_cache_fits, prepare_inputs

if TYPE_CHECKING:
    from transformer_lens.components.pos_embed import PosEmbed
    from transformer_lens.HookedTransformer import HookedTransformer
    from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
    from transformer_lens.past_key_value_caching import HookedTransformerKeyValueCache

Residual = Float[Tensor, "batch pos d_model"]


class EmbeddingMethodsMixin:
    """Needs the model's `cfg`, `embed`, `pos_embed`, `hook_*` modules and `_embed`."""

    cfg: HookedTransformerConfig
    _embed: Any
    pos_embed: PosEmbed
    hook_pos_embed: nn.Module

    def input_to_embed(
        self,
        input: Any,
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
        attention_mask: Tensor | None = None,
        past_kv_cache: HookedTransformerKeyValueCache | None = None,
    ) -> tuple[Residual, Int[Tensor, "batch pos"], Residual | None, Tensor | None]:
        """What the forward feeds block 0: (residual [batch, pos, d_model], tokens [batch,
        pos], the shortformer position embedding or None, the attention mask or None).

        input is text or token ids, as for forward; hook_tokens, hook_embed and
        hook_pos_embed fire. With past_kv_cache, the new positions follow the cached ones and
        the attention mask is appended to the cache, as a forward would."""
        model = cast("HookedTransformer", self)
        inputs = prepare_inputs(
            model, input, None, attention_mask, None, prepend_bos, padding_side, past_kv_cache
        )
        residual, shortformer_pos_embed = self._embed(inputs)
        assert inputs.tokens is not None
        return residual, inputs.tokens, shortformer_pos_embed, inputs.attention_mask

    def get_pos_offset(
        self, past_kv_cache: HookedTransformerKeyValueCache | None, batch_size: int
    ) -> int:
        """How many positions `past_kv_cache` already holds (0 without a cache), after
        checking that it fits a batch of `batch_size` for this model."""
        if past_kv_cache is None:
            return 0
        try:
            check_cache_fits(cast("HookedTransformer", self), past_kv_cache, batch_size)
        except ValueError as error:  # classic asserted these
            raise ClassicAssertionError(str(error)) from None
        return past_kv_cache.length

    def get_residual(
        self,
        embed: Residual,
        pos_offset: int,
        prepend_bos: bool | None = None,
        attention_mask: Tensor | None = None,
        tokens: Int[Tensor, "batch pos"] | None = None,
        return_shortformer_pos_embed: bool = True,
        device: str | torch.device | None = None,
    ) -> Residual | tuple[Residual, Residual | None]:
        """The residual stream's start from the token embedding [batch, pos, d_model]: plus
        the position embedding of positions pos_offset... (standard), or with it returned
        apart (shortformer), or the embedding itself (rotary, alibi). attention_mask [batch,
        pos_offset + pos] makes positions count from each row's first real token.
        prepend_bos and tokens are accepted for classic's signature and not needed."""
        residual, shortformer = embed, None
        if self.cfg.positional_embedding_type in ("standard", "shortformer"):
            positions = self._positions(embed, pos_offset, attention_mask, device)
            pos_embed = self.hook_pos_embed(self.pos_embed.embed_positions(positions))
            if self.cfg.positional_embedding_type == "standard":
                residual = embed + pos_embed
            else:
                shortformer = pos_embed
        return (residual, shortformer) if return_shortformer_pos_embed else residual

    def _positions(
        self,
        embed: Residual,
        pos_offset: int,
        attention_mask: Tensor | None,
        device: str | torch.device | None,
    ) -> Int[Tensor, "batch pos"]:
        batch, pos = embed.shape[:2]
        device = embed.device if device is None else device
        if attention_mask is None:
            return torch.arange(pos_offset, pos_offset + pos, device=device).expand(batch, pos)
        if tuple(attention_mask.shape) != (batch, pos_offset + pos):
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)}; expected [batch, "
                f"pos_offset + pos] = {(batch, pos_offset + pos)}"
            )
        counted = (attention_mask.to(device).cumsum(dim=-1) - 1).clamp(min=0)
        return counted[:, pos_offset:]

    def move_model_modules_to_device(self) -> None:
        """Move every module to cfg.device (classic spread blocks over n_devices; this fork
        keeps the model on one device)."""
        nn.Module.to(cast(nn.Module, self), self.cfg.device)
