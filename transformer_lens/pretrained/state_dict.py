"""Classic's state-dict helpers: a pretrained model's unprocessed weights in our key names,
and filling the keys a state dict lacks from a model's own initial values."""

from __future__ import annotations

import copy
import os
from typing import Any

import torch
from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig, resolve_dtype
from transformer_lens.pretrained import hub, official_models
from transformer_lens.pretrained.convert import convert_state_dict
from transformer_lens.pretrained.log import logger
from transformer_lens.pretrained.registry import ADAPTERS
from transformer_lens.pretrained.streaming import sources

# Classic accepted these here as well; they mean nothing for reading weights.
_IGNORED_KWARGS = ("hf_token", "n_ctx", "trust_remote_code")


def get_pretrained_state_dict(
    official_model_name: str,
    cfg: HookedTransformerConfig,
    hf_model: Any = None,
    dtype: torch.dtype = torch.float32,
    **kwargs: Any,
) -> dict[str, Tensor]:
    """The weights of a model (official name, alias or local directory; or `hf_model`),
    converted to our key names and shapes but not processed (no folding or centering).
    Floating tensors come in `dtype` (or `torch_dtype`), rounded there before any transform,
    as a Hugging Face model loaded in that dtype holds them. Hub kwargs: revision,
    cache_dir, token."""
    dtype = resolve_dtype(kwargs.pop("torch_dtype", dtype))
    hub_kwargs = {key: kwargs.pop(key) for key in hub.HUB_KWARGS if key in kwargs}
    unknown = sorted(key for key in kwargs if key not in _IGNORED_KWARGS)
    if unknown:
        raise TypeError(f"get_pretrained_state_dict got unexpected keyword arguments: {unknown}")
    if cfg.from_checkpoint:
        raise NotImplementedError(
            "Training checkpoints are not supported for this model family yet"
        )
    adapter = ADAPTERS.get(cfg.original_architecture or "")
    if adapter is None:
        raise ValueError(
            f"Unsupported architecture {cfg.original_architecture!r}; supported: {sorted(ADAPTERS)}"
        )
    target = copy.copy(cfg)
    target.dtype = dtype
    with _source(official_model_name, hf_model, hub_kwargs) as source:
        return convert_state_dict(adapter, target, source.get, source.keys())


def _source(name: str, hf_model: Any, hub_kwargs: dict[str, Any]) -> sources.TensorSource:
    if hf_model is not None:
        return sources.from_hf_model(hf_model)
    if os.path.isdir(name):
        return sources.from_directory(name)
    if name.lower() in (n.lower() for n in official_models.NON_HF_HOSTED_MODEL_NAMES):
        raise NotImplementedError(f"{name!r} is not hosted on the Hugging Face Hub; pass hf_model=")
    official = official_models.get_official_model_name(name)
    return sources.from_directory(hub.snapshot(official, hub_kwargs))


def fill_missing_keys(model: torch.nn.Module, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Add to `state_dict` (in place, and return it) every key of `model.state_dict()` that it
    lacks, with the model's current (initial) value. A missing weight is logged as a warning;
    missing biases and buffers are expected (many checkpoints have none)."""
    own = model.state_dict()
    parameters = {name for name, _ in model.named_parameters()}
    for key in own.keys() - state_dict.keys():
        if key in parameters and not _is_bias(key):
            logger.warning("Pretrained weights lack %s; using the model's initial value", key)
        state_dict[key] = own[key]
    return state_dict


def _is_bias(key: str) -> bool:
    name = key.rsplit(".", 1)[-1]
    return name == "b" or name.startswith(("b_", "_b_"))
