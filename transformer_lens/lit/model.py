"""HookedTransformerLIT: a HookedTransformer as a LIT model. It predicts tokens, top-k next
tokens, embeddings, attention patterns (one per query head, also for grouped-query models)
and token gradients. predict and get_embedding_table work without lit-nlp; the specs, and
serving, need it."""

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from transformer_lens.HookedTransformer import HookedTransformer
from transformer_lens.lit import _specs
from transformer_lens.lit._config import (
    HookedTransformerLITConfig,
    embedding_layers,
    resolve_config,
)
from transformer_lens.lit._lit_api import lit_base, lit_module
from transformer_lens.lit._predict import predict_example
from transformer_lens.lit.constants import ERRORS
from transformer_lens.lit.utils import get_model_info

__all__ = ["HookedTransformerLIT", "HookedTransformerLITBatched", "HookedTransformerLITConfig"]

logger = logging.getLogger(__name__)

# LIT's own base classes where lit-nlp is installed (its server needs them), plain objects
# elsewhere; mypy checks against object, the base that needs no stubs.
if TYPE_CHECKING:
    _LitModel = object
    _LitBatchedModel = object
else:
    _LitModel = lit_base("api.model", "Model")
    _LitBatchedModel = lit_base("api.model", "BatchedModel")


class HookedTransformerLIT(_LitModel):
    """A HookedTransformer as a LIT Model; `config` says which outputs predict computes."""

    def __init__(self, model: HookedTransformer, config: HookedTransformerLITConfig | None = None):
        """Wrap `model` (TypeError for anything else), with a checked copy of `config`."""
        if not isinstance(model, HookedTransformer):
            raise TypeError(ERRORS.INVALID_MODEL.format(model_type=type(model)))
        self.model = model
        self.config = resolve_config(config, model)
        self._model_info = get_model_info(model)
        logger.info("Created HookedTransformerLIT wrapper for %s", self._model_info["model_name"])

    @property
    def supports_concurrent_predictions(self) -> bool:
        """False: one model's hooks and cache must not be shared between threads."""
        return False

    def description(self) -> str:
        """The model's name and shape, for the LIT UI."""
        info = self._model_info
        return (
            f"TransformerLens: {info['model_name']} "
            f"({info['n_layers']}L, {info['n_heads']}H, d={info['d_model']})"
        )

    @classmethod
    def init_spec(cls) -> dict[str, Any]:
        """The fields the LIT UI asks for to load a new model (needs lit-nlp)."""
        return _specs.init_spec()

    def input_spec(self) -> dict[str, Any]:
        """The input fields, as lit_nlp types (needs lit-nlp)."""
        return _specs.input_spec(self.config)

    def output_spec(self) -> dict[str, Any]:
        """The output fields predict writes, as lit_nlp types (needs lit-nlp)."""
        return _specs.output_spec(
            self.config, self.model.cfg.n_layers, self._get_embedding_layers()
        )

    def _get_embedding_layers(self) -> list[int]:
        return embedding_layers(self.config, self.model.cfg.n_layers)

    def predict(self, inputs: Iterable[dict[str, Any]], **kw: Any) -> Iterator[dict[str, Any]]:
        """One output dict (the output_spec fields) per input example, lazily."""
        for example in inputs:
            yield self._predict_single(example)

    def _predict_single(self, example: dict[str, Any]) -> dict[str, Any]:
        return predict_example(self.model, self.config, example)

    def max_minibatch_size(self) -> int:
        """config.batch_size."""
        return self.config.batch_size

    def get_embedding_table(self) -> tuple[list[str], np.ndarray]:
        """(vocabulary, W_E [d_vocab, d_model]) for LIT's HotFlip; cut to the tokenizer's
        length when the embedding has padding rows beyond it."""
        embed = self.model.embed.W_E.detach().float().cpu().numpy()
        tokenizer = self.model.tokenizer
        if tokenizer is None:
            return [f"<{i}>" for i in range(embed.shape[0])], embed
        vocab_size = min(embed.shape[0], len(tokenizer))
        return [tokenizer.decode([i]) for i in range(vocab_size)], embed[:vocab_size]

    @classmethod
    def from_pretrained(
        cls,
        model_name: str,
        config: HookedTransformerLITConfig | None = None,
        **model_kwargs: Any,
    ) -> "HookedTransformerLIT":
        """HookedTransformer.from_pretrained(model_name, **model_kwargs), wrapped."""
        return cls(HookedTransformer.from_pretrained(model_name, **model_kwargs), config=config)


class HookedTransformerLITBatched(_LitBatchedModel):
    """HookedTransformerLIT as a LIT BatchedModel: LIT hands it minibatches of at most
    max_minibatch_size examples (needs lit-nlp)."""

    def __init__(self, model: HookedTransformer, config: HookedTransformerLITConfig | None = None):
        """Wrap `model` as HookedTransformerLIT does; ImportError without lit-nlp."""
        lit_module("api.model", "HookedTransformerLITBatched")
        self._wrapper = HookedTransformerLIT(model, config)
        self.model = model
        self.config = self._wrapper.config

    def description(self) -> str:
        """As HookedTransformerLIT.description."""
        return self._wrapper.description()

    @classmethod
    def init_spec(cls) -> dict[str, Any]:
        """As HookedTransformerLIT.init_spec."""
        return _specs.init_spec()

    def input_spec(self) -> dict[str, Any]:
        """As HookedTransformerLIT.input_spec."""
        return self._wrapper.input_spec()

    def output_spec(self) -> dict[str, Any]:
        """As HookedTransformerLIT.output_spec."""
        return self._wrapper.output_spec()

    def max_minibatch_size(self) -> int:
        """config.batch_size."""
        return self._wrapper.max_minibatch_size()

    def get_embedding_table(self) -> tuple[list[str], np.ndarray]:
        """As HookedTransformerLIT.get_embedding_table."""
        return self._wrapper.get_embedding_table()

    def predict_minibatch(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One output per example; the examples run one at a time (no padding to align)."""
        return [self._wrapper._predict_single(example) for example in inputs]

    @classmethod
    def from_pretrained(
        cls,
        model_name: str,
        config: HookedTransformerLITConfig | None = None,
        **model_kwargs: Any,
    ) -> "HookedTransformerLITBatched":
        """HookedTransformer.from_pretrained(model_name, **model_kwargs), wrapped."""
        return cls(HookedTransformer.from_pretrained(model_name, **model_kwargs), config=config)
