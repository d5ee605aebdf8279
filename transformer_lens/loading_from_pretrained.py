"""Classic public face of model loading; the work happens in `transformer_lens.pretrained`."""

from transformer_lens.pretrained.loader import get_pretrained_model_config
from transformer_lens.pretrained.official_models import (
    DEFAULT_MODEL_ALIASES,
    MODEL_ALIASES,
    OFFICIAL_MODEL_NAMES,
    get_official_model_name,
)

__all__ = [
    "DEFAULT_MODEL_ALIASES",
    "MODEL_ALIASES",
    "OFFICIAL_MODEL_NAMES",
    "get_official_model_name",
    "get_pretrained_model_config",
]
