"""Classic HookedTransformer entry points to the first residual stream, as functions of the
model: `input_to_embed`, `get_residual`, `get_pos_offset`. The class keeps the classic
names and delegates here; the embedding step of its forward (`_embed`) stays on the class."""

from typing import Any, Protocol, runtime_checkable

import torch
from jaxtyping import Float, Int
from torch import Tensor

from transformer_lens._errors import ClassicAssertionError
from transformer_lens._model_inputs import InputModel, ModelInputs, check_cache_fits, prepare_inputs
from transformer_lens.past_key_value_caching import HookedTransformerKeyValueCache

Residual = Float[Tensor, "batch pos d_model"]


@runtime_checkable
class EmbeddingModel(InputModel, Protocol):
    """What these functions read of a HookedTransformer: its inputs (`InputModel`), its
    embedding step, and its position embedding (which exists only where the config's
    positional_embedding_type is "standard" or "shortformer")."""

    def _embed(self, inputs: ModelInputs) -> tuple[Residual, Residual | None]:
        """The residual stream's start, and the shortformer position embedding or None."""
        ...

    def _position_embedding(self, positions: Int[Tensor, "batch pos"]) -> Residual:
        """hook_pos_embed of the learned position embedding."""
        ...


def input_to_embed(
    model: EmbeddingModel,
    input: Any,
    prepend_bos: bool | None,
    padding_side: str | None,
    attention_mask: Tensor | None,
    past_kv_cache: HookedTransformerKeyValueCache | None,
) -> tuple[Residual, Int[Tensor, "batch pos"], Residual | None, Tensor | None]:
    """See HookedTransformer.input_to_embed."""
    inputs = prepare_inputs(
        model, input, None, attention_mask, None, prepend_bos, padding_side, past_kv_cache
    )
    residual, shortformer_pos_embed = model._embed(inputs)
    assert inputs.tokens is not None
    return residual, inputs.tokens, shortformer_pos_embed, inputs.attention_mask


def get_pos_offset(
    model: InputModel, past_kv_cache: HookedTransformerKeyValueCache | None, batch_size: int
) -> int:
    """See HookedTransformer.get_pos_offset."""
    if past_kv_cache is None:
        return 0
    try:
        check_cache_fits(model, past_kv_cache, batch_size)
    except ValueError as error:  # classic asserted these
        raise ClassicAssertionError(str(error)) from None
    return past_kv_cache.length


def get_residual(
    model: EmbeddingModel,
    embed: Residual,
    pos_offset: int,
    attention_mask: Tensor | None,
    return_shortformer_pos_embed: bool,
    device: str | torch.device | None,
) -> Residual | tuple[Residual, Residual | None]:
    """See HookedTransformer.get_residual."""
    residual, shortformer = embed, None
    if model.cfg.positional_embedding_type in ("standard", "shortformer"):
        positions = _positions(embed, pos_offset, attention_mask, device)
        pos_embed = model._position_embedding(positions)
        if model.cfg.positional_embedding_type == "standard":
            residual = embed + pos_embed
        else:
            shortformer = pos_embed
    return (residual, shortformer) if return_shortformer_pos_embed else residual


def _positions(
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
