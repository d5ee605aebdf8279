"""The Hugging Face reference model that `verify` compares a HookedTransformer against.

Real weights when they can be found (a local directory, the local Hugging Face cache, or the
hub when it is reachable); otherwise, or when asked, random weights with the model's
configuration. `layers` keeps only the first layers of a large model.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from transformer_lens.pretrained import official_models

_CHECKPOINT_PATTERNS = ["*.json", "*.safetensors", "*.bin", "tokenizer*", "*.model"]
# Random 1-D weights (norm scales, biases) move this far from Hugging Face's initial values,
# so that conventions such as Gemma's `1 + w` norms or a forgotten bias show in the logits.
_RANDOM_VECTOR_SPREAD = 0.3
# With random weights and no `layers`, keep this many: more layers of random weights test
# nothing new and cost time (a Gemma-2b-shaped model verifies in well under two minutes).
RANDOM_DEFAULT_LAYERS = 2


@dataclass
class Reference:
    """A Hugging Face model and where its weights came from."""

    hf_model: Any
    # The directory holding real weights; None when the weights are random.
    directory: str | None
    # The official name when the model has one, else None.
    official: str | None
    # The number of layers the full model has, before `layers` kept the first few.
    full_layers: int
    origin: str


def load_reference(
    model: str,
    random_weights: bool,
    layers: int | None,
    dtype: torch.dtype,
    device: str | torch.device,
    seed: int = 0,
) -> Reference:
    """The reference for an official name or alias, a local directory or an HF repo id.
    `layers` keeps the first layers; with random weights it defaults to
    RANDOM_DEFAULT_LAYERS."""
    official = _official_or_none(model)
    directory = None if random_weights else _find_checkpoint(model, official)
    if directory is not None:
        return _from_directory(directory, official, layers, dtype, device)
    config = _config_without_weights(model, official)
    return _random(config, official, layers, dtype, device, seed)


def truncated_config(config: Any, layers: int | None) -> Any:
    """A copy of an HF config that keeps only the first `layers` layers."""
    config = copy.deepcopy(config)
    full = config.num_hidden_layers
    if layers is None or layers == full:
        return config
    if not 1 <= layers <= full:
        raise ValueError(f"--layers must be between 1 and {full} for this model, got {layers}")
    config.num_hidden_layers = layers
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = config.layer_types[:layers]  # per-layer attention kinds (Gemma-2/3)
    return config


def cast_like_from_pretrained(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Cast an HF model in place as `from_pretrained(dtype=...)` leaves it: rotary inverse
    frequencies stay float32."""
    frequencies = {n: b for n, b in model.named_buffers() if "inv_freq" in n}
    model.to(dtype)
    for name, buffer in frequencies.items():
        owner_name, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(owner_name), attribute, buffer)
    return model


def _official_or_none(model: str) -> str | None:
    if os.path.isdir(model):
        return None
    try:
        return official_models.get_official_model_name(model)
    except ValueError:
        return None


def _find_checkpoint(model: str, official: str | None) -> str | None:
    """A local directory with real weights, or None when there is none to be had."""
    if os.path.isdir(model):
        return model if _has_weights(model) else None
    repo = official or model
    if repo.count("/") != 1:
        return None  # not a hub repo id: nothing to look up
    from huggingface_hub import snapshot_download

    for local_only in (True, False):
        if not local_only and os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", ""):
            break
        try:
            path = str(
                snapshot_download(
                    repo, allow_patterns=_CHECKPOINT_PATTERNS, local_files_only=local_only
                )
            )
        except Exception:  # not cached / hub unreachable / no such repo
            continue
        if _has_weights(path):
            return path
    return None


def _has_weights(directory: str) -> bool:
    names = os.listdir(directory)
    return "config.json" in names and any(n.endswith((".safetensors", ".bin")) for n in names)


def _config_without_weights(model: str, official: str | None) -> Any:
    from transformers import AutoConfig

    if os.path.isdir(model):
        return AutoConfig.from_pretrained(model, local_files_only=True)
    if official is not None:
        return official_models.official_hf_config(official)
    raise ValueError(
        f"Cannot verify {model!r}: it is not a local directory or an official model name "
        "(see transformer_lens.loading.OFFICIAL_MODEL_NAMES), and no config for it was found "
        "in the local Hugging Face cache or on the hub."
    )


def _from_directory(
    directory: str,
    official: str | None,
    layers: int | None,
    dtype: torch.dtype,
    device: str | torch.device,
) -> Reference:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(directory, local_files_only=True)
    full = config.num_hidden_layers
    config = truncated_config(config, layers)
    with _quiet():  # "weights not used" for the layers left out
        hf_model: torch.nn.Module = AutoModelForCausalLM.from_pretrained(
            directory,
            config=config,
            dtype=dtype,
            attn_implementation="eager",
            local_files_only=True,
        )
    kept = (
        f", first {config.num_hidden_layers} of {full} layers"
        if config.num_hidden_layers != full
        else ""
    )
    return Reference(
        hf_model.to(device).eval(),
        directory,
        official,
        full,
        f"real weights from {directory}{kept}",
    )


def _random(
    config: Any,
    official: str | None,
    layers: int | None,
    dtype: torch.dtype,
    device: str | torch.device,
    seed: int,
) -> Reference:
    from transformers import AutoModelForCausalLM

    full = config.num_hidden_layers
    config = truncated_config(
        config, min(full, RANDOM_DEFAULT_LAYERS) if layers is None else layers
    )
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    with _quiet(), _torch_init_skipped():
        # Built and initialised in the dtype it is verified in, as from_pretrained(dtype=...)
        # builds it: a float32 model cast afterwards would hold both copies at once.
        hf_model = AutoModelForCausalLM.from_config(
            config, attn_implementation="eager", dtype=dtype
        )
    # One pass of the model's own initialiser over every parameter: the modules' torch
    # defaults, which `from_config` would run first and HF's init then overwrites, cost
    # more than half a minute on two cores at official width. Tied first, so that a tied
    # lm_head (256000 x 2048 for Gemma) is neither initialised nor touched on its own.
    hf_model.tie_weights()
    hf_model.init_weights()
    with torch.no_grad():
        for parameter in hf_model.parameters():
            if parameter.ndim == 1:
                parameter.add_(torch.randn_like(parameter) * _RANDOM_VECTOR_SPREAD)
    cast_like_from_pretrained(hf_model, dtype)
    described = "official configuration" if official else "its configuration"
    origin = (
        f"random weights, {described}, {config.num_hidden_layers} of {full} layers"
        if config.num_hidden_layers != full
        else f"random weights, {described}"
    )
    return Reference(hf_model.to(device).eval(), None, official, full, origin)


@contextlib.contextmanager
def _torch_init_skipped() -> Iterator[None]:
    """Build modules without torch's default initialisation (and without HF's, which the
    caller runs once afterwards); transformers without this helper initialise twice."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:
        yield
        return
    with no_init_weights():
        yield


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence transformers' logging and warnings while a reference model is built."""
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
