"""The work behind HookedTransformer's weight views and the analyses built on them, as
functions: stacking per-layer weights, labels, accumulated biases, composition scores and
residual directions. The class keeps the classic properties and delegates here.

Every stacked view stacks the per-layer parameters into a new tensor, so reading one copies;
they are for analysis, never used by the forward pass. Grouped K/V are expanded to one
entry per query head (query head h reads key/value head h // group).
"""

from typing import Any, Protocol, runtime_checkable

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from transformer_lens.FactoredMatrix import FactoredMatrix
from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.utils import composition_scores

# One token (an id, a single-token string, a 0-d tensor) or any tensor or list of ids.
TokenOrTokens = str | int | list[int] | Int[Tensor, "..."]


@runtime_checkable
class WeightModel(Protocol):
    """What these functions read of a HookedTransformer."""

    cfg: HookedTransformerConfig
    blocks: Any  # the TransformerBlocks, or modules a user swapped in: read by attribute
    tokenizer: Any

    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab_out"]:
        """The unembedding."""
        ...

    def to_single_token(self, string: str) -> int:
        """The id of a string that is exactly one token."""
        ...


@runtime_checkable
class CircuitModel(Protocol):
    """What the composition scores read: the config and the QK/OV circuits."""

    cfg: HookedTransformerConfig

    @property
    def QK(self) -> FactoredMatrix:
        """The query-key circuits."""
        ...

    @property
    def OV(self) -> FactoredMatrix:
        """The output-value circuits."""
        ...


def stacked(blocks: nn.ModuleList, path: str) -> Tensor:
    """The tensor at `path` (e.g. "attn.W_Q") of every block, stacked along a new first axis."""
    tensors = []
    for block in blocks:
        module: Any = block
        for part in path.split("."):
            module = getattr(module, part)
        tensors.append(module)
    return torch.stack(tensors, dim=0)


def no_position_table(cfg: HookedTransformerConfig) -> AttributeError:
    """The error W_pos raises on a model without a learned position table."""
    return AttributeError(
        f"W_pos does not exist: positional_embedding_type is "
        f"{cfg.positional_embedding_type!r}, which has no learned position table"
    )


def all_head_labels(cfg: HookedTransformerConfig) -> list[str]:
    """See HookedTransformer.all_head_labels."""
    return [f"L{layer}H{head}" for layer in range(cfg.n_layers) for head in range(cfg.n_heads)]


def accumulated_bias(
    model: WeightModel, layer: int, mlp_input: bool, include_mlp_biases: bool
) -> Float[Tensor, " d_model"]:
    """See HookedTransformer.accumulated_bias."""
    cfg = model.cfg
    if not 0 <= layer <= cfg.n_layers:
        raise ValueError(f"layer must be in [0, {cfg.n_layers}]; got {layer}")
    if mlp_input and (layer == cfg.n_layers or cfg.attn_only):
        raise ValueError(f"mlp_input needs a block with an MLP; got layer {layer}")
    total = torch.zeros(cfg.d_model, dtype=cfg.dtype, device=model.W_U.device)
    for block in model.blocks[:layer]:
        total = total + block.attn.b_O
        if include_mlp_biases and not cfg.attn_only:
            total = total + block.mlp.b_out
    if mlp_input and not cfg.parallel_attn_mlp:
        total = total + model.blocks[layer].attn.b_O
    return total


def all_composition_scores(
    model: CircuitModel, mode: str
) -> Float[Tensor, "layer1 head1 layer2 head2"]:
    """See HookedTransformer.all_composition_scores."""
    readers = {"Q": lambda: model.QK, "K": lambda: model.QK.T, "V": lambda: model.OV}
    if mode not in readers:
        raise ValueError(f"mode must be 'Q', 'K' or 'V'; got {mode!r}")
    scores = composition_scores(model.OV, readers[mode](), broadcast_dims=True)
    layers = torch.arange(model.cfg.n_layers, device=scores.device)
    earlier = (layers[:, None, None, None] < layers[None, None, :, None]).expand_as(scores)
    return torch.where(earlier, scores, torch.zeros_like(scores))


def tokens_to_residual_directions(
    model: WeightModel, tokens: TokenOrTokens
) -> Float[Tensor, "... d_model"]:
    """See HookedTransformer.tokens_to_residual_directions."""
    if isinstance(tokens, str):
        tokens = _single_token(model, tokens)
    if isinstance(tokens, int):
        return model.W_U[:, tokens]
    index = torch.as_tensor(tokens, device=model.W_U.device)
    if index.is_floating_point():
        raise ValueError(f"Token ids must be integers; got dtype {index.dtype}")
    return model.W_U.T[index.long()]


def _single_token(model: WeightModel, text: str) -> int:
    if model.tokenizer is None:
        raise ValueError(f"Cannot look up the token {text!r}: no tokenizer is attached")
    return int(model.to_single_token(text))
