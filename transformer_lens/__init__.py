"""transformer_lens: the classic HookedTransformer API, correct on grouped-query attention."""

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
