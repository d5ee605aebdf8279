"""HookedTransformerLITConfig, and its check against the model it will wrap."""

import dataclasses
from dataclasses import dataclass

from transformer_lens.HookedTransformer import HookedTransformer
from transformer_lens.lit.constants import DEFAULTS


@dataclass
class HookedTransformerLITConfig:
    """What HookedTransformerLIT computes for each example (defaults: constants.DEFAULTS).

    embedding_layers None picks the layers: all with output_all_layers, else the first,
    middle and last (all when there are at most 3). device None is the model's device."""

    max_seq_length: int = DEFAULTS.MAX_SEQ_LENGTH
    batch_size: int = DEFAULTS.BATCH_SIZE
    top_k: int = DEFAULTS.TOP_K
    compute_gradients: bool = DEFAULTS.COMPUTE_GRADIENTS
    output_attention: bool = DEFAULTS.OUTPUT_ATTENTION
    output_embeddings: bool = DEFAULTS.OUTPUT_EMBEDDINGS
    output_all_layers: bool = DEFAULTS.OUTPUT_ALL_LAYERS
    embedding_layers: list[int] | None = None
    prepend_bos: bool = DEFAULTS.PREPEND_BOS
    device: str | None = None


def embedding_layers(config: HookedTransformerLITConfig, n_layers: int) -> list[int]:
    """The layers whose mean residual stream is output: config.embedding_layers, else all
    of them (output_all_layers, or at most 3 layers), else the first, middle and last."""
    if config.embedding_layers is not None:
        return list(config.embedding_layers)
    if config.output_all_layers or n_layers <= 3:
        return list(range(n_layers))
    return [0, n_layers // 2, n_layers - 1]


def resolve_config(
    config: HookedTransformerLITConfig | None, model: HookedTransformer
) -> HookedTransformerLITConfig:
    """A copy of `config` (the caller's object is left alone) with the device and
    output_embeddings filled in, checked against `model`."""
    resolved = dataclasses.replace(config or HookedTransformerLITConfig())
    n_layers, d_vocab = model.cfg.n_layers, model.cfg.d_vocab
    bad_layers = [layer for layer in resolved.embedding_layers or [] if not 0 <= layer < n_layers]
    if bad_layers:
        raise ValueError(
            f"embedding_layers {bad_layers} do not exist: the model has layers 0..{n_layers - 1}"
        )
    if not 1 <= resolved.top_k <= d_vocab:
        raise ValueError(f"top_k must be between 1 and d_vocab={d_vocab}, got {resolved.top_k}")
    for field in ("max_seq_length", "batch_size"):
        if getattr(resolved, field) < 1:
            raise ValueError(f"{field} must be at least 1, got {getattr(resolved, field)}")
    # LIT's TokenGradients point at the input_embeddings field (grad_for), so it must exist.
    if resolved.compute_gradients:
        resolved.output_embeddings = True
    if resolved.device is None:
        resolved.device = str(model.cfg.device)
    return resolved
