"""transformer_lens: the classic HookedTransformer API, correct on grouped-query attention."""

import importlib
from types import ModuleType

from transformer_lens import factories, loading_from_pretrained, patching, utilities, utils
from transformer_lens import loading_from_pretrained as loading
from transformer_lens.ActivationCache import ActivationCache
from transformer_lens.FactoredMatrix import FactoredMatrix
from transformer_lens.hook_points import HookedRootModule, HookPoint
from transformer_lens.HookedTransformer import HookedTransformer
from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.past_key_value_caching import (
    HookedTransformerKeyValueCache,
    HookedTransformerKeyValueCacheEntry,
)

# The pre-2.0 names, kept for old notebooks.
EasyTransformer = HookedTransformer
EasyTransformerConfig = HookedTransformerConfig
EasyTransformerKeyValueCache = HookedTransformerKeyValueCache
EasyTransformerKeyValueCacheEntry = HookedTransformerKeyValueCacheEntry

__version__ = "3.0.0"


def __getattr__(name: str) -> ModuleType:
    """`transformer_lens.lit`, imported on first use (and left out of __all__, so that a star
    import stays cheap): it loads lit-nlp where that is installed."""
    if name == "lit":
        return importlib.import_module("transformer_lens.lit")
    raise AttributeError(f"module 'transformer_lens' has no attribute {name!r}")


__all__ = [
    "ActivationCache",
    "EasyTransformer",
    "EasyTransformerConfig",
    "EasyTransformerKeyValueCache",
    "EasyTransformerKeyValueCacheEntry",
    "FactoredMatrix",
    "HookPoint",
    "HookedRootModule",
    "HookedTransformer",
    "HookedTransformerConfig",
    "HookedTransformerKeyValueCache",
    "HookedTransformerKeyValueCacheEntry",
    "__version__",
    "factories",
    "loading",
    "loading_from_pretrained",
    "patching",
    "utilities",
    "utils",
]
