"""Classic's config helpers: the config dict of a model name, its basic sizes as a small
dataclass, and its parameter count. Each delegates to the family adapters via the loader."""

from __future__ import annotations

import dataclasses
from typing import Any

from transformer_lens.pretrained import hub
from transformer_lens.pretrained.loader import config_dict, get_pretrained_model_config

# Accepted for compatibility with classic, which passed them to AutoConfig: the config here
# comes from the shipped table or a local directory, never the hub.
_IGNORED_KWARGS = (*hub.HUB_KWARGS, "hf_token", "local_files_only")


def convert_hf_model_config(model_name: str, **kwargs: Any) -> dict[str, Any]:
    """HookedTransformerConfig fields, as a dict, for an official name, alias or local
    directory of a supported architecture (with original_architecture and tokenizer_name)."""
    unknown = sorted(k for k in kwargs if k not in (*_IGNORED_KWARGS, "trust_remote_code"))
    if unknown:
        raise TypeError(f"convert_hf_model_config got unexpected keyword arguments: {unknown}")
    fields = config_dict(model_name)
    if kwargs.get("trust_remote_code", False):
        fields["trust_remote_code"] = True
    return fields


@dataclasses.dataclass
class Config:
    """The basic sizes of a model, as the "clean transformer" tutorials use them."""

    d_model: int = 768
    debug: bool = True
    layer_norm_eps: float = 1e-5
    d_vocab: int = 50257
    init_range: float = 0.02
    n_ctx: int = 1024
    d_head: int = 64
    d_mlp: int = 3072
    n_heads: int = 12
    n_layers: int = 12


# Config field -> HookedTransformerConfig field, where the names differ.
_BASIC_FIELD_SOURCES = {"layer_norm_eps": "eps", "init_range": "initializer_range"}


def get_basic_config(model_name: str, **kwargs: Any) -> Config:
    """The basic sizes of a pretrained model; kwargs go to get_pretrained_model_config."""
    cfg = get_pretrained_model_config(model_name, **kwargs)
    values = {
        field.name: getattr(cfg, _BASIC_FIELD_SOURCES.get(field.name, field.name))
        for field in dataclasses.fields(Config)
        if field.name != "debug"  # a tutorial switch, not a fact about the model
    }
    return Config(**values)


def get_num_params_of_pretrained(model_name: str) -> int:
    """The parameter count of a pretrained model as HookedTransformerConfig counts it
    (attention and MLP weights; embeddings, norms and biases are left out)."""
    n_params = get_pretrained_model_config(model_name).n_params
    if n_params is None:  # HookedTransformerConfig counts them whenever it is built
        raise ValueError(f"The config of {model_name!r} has no parameter count")
    return n_params
