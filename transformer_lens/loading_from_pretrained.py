"""Classic public face of model loading; the work happens in `transformer_lens.pretrained`."""

from transformer_lens.pretrained.checkpoints import (
    PYTHIA_CHECKPOINTS,
    PYTHIA_V0_CHECKPOINTS,
    STANFORD_CRFM_CHECKPOINTS,
    get_checkpoint_labels,
)
from transformer_lens.pretrained.classic_config import (
    Config,
    convert_hf_model_config,
    get_basic_config,
    get_num_params_of_pretrained,
)
from transformer_lens.pretrained.loader import get_pretrained_model_config
from transformer_lens.pretrained.log import logger
from transformer_lens.pretrained.neel_config import convert_neel_model_config
from transformer_lens.pretrained.official_models import (
    DEFAULT_MODEL_ALIASES,
    MODEL_ALIASES,
    NEED_REMOTE_CODE_MODELS,
    NON_HF_HOSTED_MODEL_NAMES,
    OFFICIAL_MODEL_NAMES,
    get_official_model_name,
    make_model_alias_map,
)
from transformer_lens.pretrained.state_dict import fill_missing_keys, get_pretrained_state_dict

__all__ = [
    "Config",
    "DEFAULT_MODEL_ALIASES",
    "MODEL_ALIASES",
    "NEED_REMOTE_CODE_MODELS",
    "NON_HF_HOSTED_MODEL_NAMES",
    "OFFICIAL_MODEL_NAMES",
    "PYTHIA_CHECKPOINTS",
    "PYTHIA_V0_CHECKPOINTS",
    "STANFORD_CRFM_CHECKPOINTS",
    "convert_hf_model_config",
    "convert_neel_model_config",
    "fill_missing_keys",
    "get_basic_config",
    "get_checkpoint_labels",
    "get_num_params_of_pretrained",
    "get_official_model_name",
    "get_pretrained_model_config",
    "get_pretrained_state_dict",
    "logger",
    "make_model_alias_map",
]
