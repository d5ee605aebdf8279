"""Processing a model's weights after it was built, two ways.

- A whole state dict the caller holds (`load_and_process_state_dict`; `process_weights_` off
  the CPU) is processed at once, then checked and loaded with `load_state_dict`.
- `process_weights_` on a CPU model streams its own parameters through the loader's pieces
  under an identity plan: each piece (the embedding, each layer, the unembedding by
  vocabulary blocks) is processed and written back before the next is read, and an
  unembedding that owns its storage is folded and centred into its own rows. Processing the
  whole state dict would hold every processed tensor, and for the unembedding the
  temporaries of folding and centring it, beside the model: 4-5 GB on top of a 5 GB float32
  Gemma-2b-shaped model. The results are those of the whole path (W_U within the summation
  order of center_unembed's mean).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from transformer_lens import weight_processing
from transformer_lens.components.embed import Embed
from transformer_lens.components.unembed import Unembed
from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.pretrained.adapter import WeightSource, transposed, unchanged
from transformer_lens.pretrained.convert import PlannedWeight
from transformer_lens.pretrained.processing_steps import (
    FOLDED_NORMS,
    ProcessingFlags,
    for_processing,
)
from transformer_lens.pretrained.streaming.pieces import stream_and_process
from transformer_lens.pretrained.streaming.sources import from_own_weights
from transformer_lens.pretrained.streaming.target import LoadTarget


@runtime_checkable
class ProcessedModel(LoadTarget, Protocol):
    """What processing a built model reads of it, beyond what the streamer does:
    HookedTransformer provides it (typed here, so that this module does not import the
    class that calls it)."""

    blocks: nn.ModuleList
    ln_final: nn.Module
    embed: Embed

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> Any: ...

    def setup(self) -> None: ...

    def _tieable_unembed(self) -> Unembed | None: ...


def load_and_process(
    model: ProcessedModel, state_dict: dict[str, Tensor], flags: ProcessingFlags
) -> None:
    """Process a whole state dict, then load it (checked before anything changes)."""
    cfg = copy.copy(model.cfg)  # what processing reads: the norms before the fold
    steps = flags.that_apply(cfg)
    processed = weight_processing.process_weights(for_processing(state_dict, flags), cfg, steps)
    if not (flags.fold_ln and model.cfg.normalization_type in FOLDED_NORMS):
        model.load_state_dict(processed)
        return
    norms = _norm_modules(model)
    model._use_folded_norms()
    try:
        model.load_state_dict(processed)
    except BaseException:  # a refused state dict leaves the model exactly as it was
        model.cfg.normalization_type = cfg.normalization_type
        for (owner, name), module in norms.items():
            setattr(owner, name, module)
        model.setup()
        raise


def _norm_modules(model: ProcessedModel) -> dict[tuple[object, str], nn.Module]:
    """The norm modules a fold replaces, by (owner, attribute name)."""
    owners: list[tuple[object, str]] = [(model, "ln_final")]
    for block in model.blocks:
        owners += (
            [(block, "ln1"), (block, "ln2"), (block.mlp, "ln")]
            if hasattr(block, "mlp")
            else [(block, "ln1")]
        )
    return {(owner, name): getattr(owner, name) for owner, name in owners if hasattr(owner, name)}


def process_own_weights(model: ProcessedModel, flags: ProcessingFlags) -> None:
    """process_weights_: streamed where the model allows, else through the whole path."""
    if can_process_in_place(model):
        process_in_place(model, flags)
    else:
        load_and_process(model, model.state_dict(), flags)


_UNEMBED = "unembed.W_U"


class _OwnWeight(PlannedWeight):
    """A parameter of the model as its own source. It is already in the dtype its parameter
    holds (a half-precision model keeps RMSNorm weights in float32): nothing to round."""

    def made_from(self, hf_tensor: Tensor, cfg: HookedTransformerConfig) -> Tensor:
        return self.source.transform(hf_tensor, cfg)


def can_process_in_place(model: ProcessedModel) -> bool:
    """Whether the streamed path applies: parameters on the CPU (the loader's buffers are
    CPU tensors) under the classic names of the embedding and unembedding."""
    parameters = dict(model.named_parameters())
    return (
        all(p.device.type == "cpu" for p in parameters.values())
        and "embed.W_E" in parameters
        and _UNEMBED in parameters
    )


def process_in_place(model: ProcessedModel, flags: ProcessingFlags) -> None:
    """Process the model's weights in place with the given steps (see `from_pretrained`)."""
    _refusals_first(model, flags)
    unembed = model._tieable_unembed()
    processing = flags.fold_ln or flags.center_writing_weights or flags.center_unembed
    if unembed is not None and processing and unembed.is_tied_to(model.embed):
        # W_U's rows are about to be rewritten: they must not be W_E's.
        unembed.untie()
    # The source is HF-shaped for the vocabulary pass: W_U as [d_vocab, d_model] rows.
    tensors = {
        key: (p.detach().T if key == _UNEMBED else p.detach())
        for key, p in model.named_parameters()
    }
    plan: list[PlannedWeight] = [
        _OwnWeight(key, key, WeightSource((key,), transposed if key == _UNEMBED else unchanged))
        for key in tensors
    ]
    with from_own_weights(tensors) as source:
        stream_and_process(model, plan, source, flags)


def _refusals_first(model: ProcessedModel, flags: ProcessingFlags) -> None:
    """Processing refuses some models (a rotary refactor, a mixture-of-experts fold) when it
    meets their first layer, which streaming reaches after writing the embedding: process
    that layer alone first, and drop the result, so that a refusal changes nothing."""
    if model.cfg.n_layers == 0:
        return
    cfg = copy.copy(model.cfg)
    first_layer = {
        k: v.detach().float() for k, v in model.named_parameters() if k.startswith("blocks.0.")
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the real pass says which steps it skips
        steps = flags.that_apply(cfg)
        weight_processing.process_weights(first_layer, cfg, steps, layers=[0], unembed=False)
