"""LIT (Google's Learning Interpretability Tool, https://pair-code.github.io/lit/) for
HookedTransformer models: a LIT model wrapper, example datasets, and `serve`/`LITWidget`.

    from transformer_lens.lit import HookedTransformerLIT, SimpleTextDataset, serve
    serve({"gpt2": HookedTransformerLIT(model)}, {"texts": SimpleTextDataset.from_strings(texts)})

Importing this needs no lit-nlp; what needs it (specs, serving) raises an ImportError that
says to `pip install "transformer-lens[lit]"`."""

import logging

from transformer_lens.lit._server import LITWidget, serve
from transformer_lens.lit.constants import ERRORS, INPUT_FIELDS, OUTPUT_FIELDS, SERVER_CONFIG
from transformer_lens.lit.dataset import (
    InductionDataset,
    IOIDataset,
    PromptCompletionDataset,
    SimpleTextDataset,
    wrap_for_lit,
)
from transformer_lens.lit.model import (
    HookedTransformerLIT,
    HookedTransformerLITBatched,
    HookedTransformerLITConfig,
)
from transformer_lens.lit.utils import check_lit_installed

__all__ = [
    "ERRORS",
    "HookedTransformerLIT",
    "HookedTransformerLITBatched",
    "HookedTransformerLITConfig",
    "INPUT_FIELDS",
    "IOIDataset",
    "InductionDataset",
    "LITWidget",
    "OUTPUT_FIELDS",
    "PromptCompletionDataset",
    "SERVER_CONFIG",
    "SimpleTextDataset",
    "check_lit_installed",
    "serve",
    "wrap_for_lit",
]

logger = logging.getLogger(__name__)
