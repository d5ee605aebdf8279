"""process_weights_: a model's own weights processed in place, one piece at a time.

Processing the whole state dict at once holds every processed tensor (and, for the
unembedding, the temporaries of folding and centring it) beside the model: for Gemma's
256k-row vocabulary that is 4-5 GB on top of a 5 GB float32 model. Here the model's own
parameters are the source of the streaming loader, under an identity plan: each piece (the
embedding, each layer, the unembedding by vocabulary blocks) is processed and written back
before the next is read, and an unembedding that owns its storage is folded and centred
into its own rows. The results are those of processing the whole state dict (W_U within
the summation order of center_unembed's mean).
"""

from __future__ import annotations

import copy
import warnings
from typing import TYPE_CHECKING

from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.pretrained import processing_steps
from transformer_lens.pretrained.adapter import WeightSource, transposed, unchanged
from transformer_lens.pretrained.convert import PlannedWeight
from transformer_lens.pretrained.processing_steps import ProcessingFlags
from transformer_lens.pretrained.streaming.pieces import stream_and_process
from transformer_lens.pretrained.streaming.sources import from_own_weights

if TYPE_CHECKING:
    from transformer_lens.HookedTransformer import HookedTransformer

_UNEMBED = "unembed.W_U"


class _OwnWeight(PlannedWeight):
    """A parameter of the model as its own source. It is already in the dtype its parameter
    holds (a half-precision model keeps RMSNorm weights in float32): nothing to round."""

    def made_from(self, hf_tensor: Tensor, cfg: HookedTransformerConfig) -> Tensor:
        return self.source.transform(hf_tensor, cfg)


def can_process_in_place(model: HookedTransformer) -> bool:
    """Whether the streamed path applies: parameters on the CPU (the loader's buffers are
    CPU tensors) under the classic names of the embedding and unembedding."""
    parameters = dict(model.named_parameters())
    return (
        all(p.device.type == "cpu" for p in parameters.values())
        and "embed.W_E" in parameters
        and _UNEMBED in parameters
    )


def process_in_place(model: HookedTransformer, flags: ProcessingFlags) -> None:
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


def _refusals_first(model: HookedTransformer, flags: ProcessingFlags) -> None:
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
        steps = processing_steps.step_flags(cfg, flags)
        processing_steps.run_steps(first_layer, cfg, steps, layers=[0], unembed=False)
