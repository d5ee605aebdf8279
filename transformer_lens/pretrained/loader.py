"""from_pretrained: resolve a name, a directory or an HF model to a loaded HookedTransformer."""

from __future__ import annotations

import copy
import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from transformer_lens._tokenizer_loading import load_tokenizer
from transformer_lens.HookedTransformerConfig import HookedTransformerConfig, resolve_dtype
from transformer_lens.pretrained import hub, official_models
from transformer_lens.pretrained.convert import config_fields, plan_state_dict
from transformer_lens.pretrained.name_hints import looks_like_repo_id, unknown_model_error
from transformer_lens.pretrained.registry import adapter_for
from transformer_lens.pretrained.request import LoadRequest
from transformer_lens.pretrained.streaming import sources
from transformer_lens.pretrained.streaming.pieces import stream_and_process


@dataclass(frozen=True)
class _Located:
    """Where a request's weights are, resolved once: the HF config that describes them, and
    the directory that holds them (None for hf_model=)."""

    hf_config: Any
    directory: str | None


def load_pretrained(cls: Any, request: LoadRequest) -> Any:
    """from_pretrained's work: locate the checkpoint, build the model from its config, and
    stream the weights in, processed as `request.flags` asks."""
    model_name, hf_model = request.model_name, request.hf_model
    _refuse_other_kinds(model_name, official_models.NOT_DECODER_ONLY.get(model_name.lower()))
    if request.checkpoint_index is not None or request.checkpoint_value is not None:
        raise NotImplementedError(
            "Training checkpoints are not supported for this model family yet"
        )
    located = _locate(model_name, hf_model, request.hub_kwargs)
    cfg = get_pretrained_model_config(
        model_name, hf_cfg=located.hf_config, **request.config_options
    )
    tokenizer = request.tokenizer
    if tokenizer is None:
        local_only = hf_model is not None or located.directory is not None
        tokenizer = _load_tokenizer(located.directory or cfg.tokenizer_name, local_only)
    model = cls(
        cfg,
        tokenizer,
        move_to_device=False,
        default_padding_side=request.default_padding_side,
        load_tokenizer=False,
    )
    if hf_model is not None:
        source = sources.from_hf_model(hf_model, shared=request.share_hf_tensors)
    else:
        assert located.directory is not None
        source = sources.from_directory(located.directory)
    with source:
        planned = plan_state_dict(adapter_for(located.hf_config), model.cfg, source.keys())
        stream_and_process(model, planned, source, request.flags, request.progress_bar)
    if request.move_to_device and model.cfg.device is not None:
        model.to(model.cfg.device, print_details=False)
    logging.info("Loaded pretrained model %s into HookedTransformer", model_name)
    return model


def _locate(model_name: str, hf_model: Any, hub_kwargs: Mapping[str, Any]) -> _Located:
    """The checkpoint's config and directory: hf_model's own, a local directory's, or an
    official name's snapshot (from the cache, else the hub). For a snapshot the checkpoint's
    own config.json describes the weights, not our table (which resolves names offline)."""
    if hf_model is not None:
        return _Located(_resolve(model_name, hf_model)[0], None)
    if os.path.isdir(model_name):
        return _Located(_resolve(model_name, None)[0], model_name)
    official = _official_or_none(model_name)
    if official is None:
        _raise_unknown(model_name, dict(hub_kwargs))
    assert official is not None
    directory = hub.snapshot(official, dict(hub_kwargs))
    return _Located(_resolve(directory, None)[0], directory)


def _kind_of(hf_config: Any) -> str | None:
    """What an HF config describes when it is not a decoder-only model, else None."""
    return "encoder-decoder" if getattr(hf_config, "is_encoder_decoder", False) else None


def _refuse_other_kinds(model_name: str, kind: str | None) -> None:
    if kind is not None:
        raise RuntimeError(f"{model_name} is an {kind} model; HookedTransformer is decoder-only")


def get_pretrained_model_config(
    model_name: str,
    hf_cfg: Any = None,
    checkpoint_index: int | None = None,
    checkpoint_value: int | None = None,
    fold_ln: bool = False,
    device: str | torch.device | None = None,
    n_devices: int = 1,
    default_prepend_bos: bool | None = None,
    dtype: str | torch.dtype = torch.float32,
    first_n_layers: int | None = None,
    n_ctx: int | None = None,
    **kwargs: Any,
) -> HookedTransformerConfig:
    """Our config for a model name (official, alias or path) or a given HF config."""
    fields = config_dict(model_name, hf_cfg)
    fields.update(
        model_name=model_name.rstrip("/").split("/")[-1],
        init_weights=False,
        device=device,
        n_devices=n_devices,
        dtype=resolve_dtype(dtype),
    )
    if default_prepend_bos is not None:  # else the family's default (Qwen: False), else True
        fields["default_prepend_bos"] = default_prepend_bos
    fields.setdefault("default_prepend_bos", True)
    if fold_ln:
        norm = fields.get("normalization_type")
        fields["normalization_type"] = {"LN": "LNPre", "RMS": "RMSPre"}.get(norm or "", norm)
    if first_n_layers is not None:
        _keep_first_layers(fields, first_n_layers)
    if n_ctx is not None:
        if n_ctx > fields["n_ctx"]:
            warnings.warn(
                f"n_ctx={n_ctx} is larger than the model's {fields['n_ctx']}", stacklevel=2
            )
        fields["n_ctx"] = n_ctx
    fields.update(kwargs)
    return HookedTransformerConfig(**fields)


def _keep_first_layers(fields: dict[str, Any], first_n_layers: int) -> None:
    if not 0 < first_n_layers <= fields["n_layers"]:
        raise ValueError(
            f"first_n_layers must be in [1, {fields['n_layers']}], got {first_n_layers}"
        )
    fields["n_layers"] = first_n_layers
    if fields.get("attn_types") is not None:
        fields["attn_types"] = fields["attn_types"][:first_n_layers]


def config_dict(model_name: str, hf_cfg: Any = None) -> dict[str, Any]:
    """The family adapter's config fields for a model name (official, alias or directory)
    or a given HF config, with original_architecture and tokenizer_name."""
    if hf_cfg is None:
        hf_cfg, _ = _resolve(model_name, None)
    hf_cfg = _with_architecture(hf_cfg, model_name)
    fields = config_fields(adapter_for(hf_cfg), hf_cfg)
    fields["tokenizer_name"] = _official_or_none(model_name) or model_name
    return fields


def _with_architecture(hf_cfg: Any, model_name: str) -> Any:
    """An HF config (or classic dict of one) that names its architecture: configs built in
    code have none, and then the official model of that name says which it is."""
    official = _official_or_none(model_name)
    if isinstance(hf_cfg, dict):
        from transformers import AutoConfig

        fields = dict(hf_cfg)
        model_type = fields.pop("model_type", None)
        if model_type is None and official is not None:
            model_type = official_models.OFFICIAL_MODELS[official].model_type
        if model_type is None:
            raise ValueError("hf_cfg given as a dict needs a 'model_type' entry")
        hf_cfg = AutoConfig.for_model(model_type, **fields)
    if not getattr(hf_cfg, "architectures", None) and official is not None:
        hf_cfg = copy.copy(hf_cfg)
        hf_cfg.architectures = [official_models.OFFICIAL_MODELS[official].architecture]
    return hf_cfg


def _official_or_none(model_name: str) -> str | None:
    try:
        return official_models.get_official_model_name(model_name)
    except ValueError:
        return None


def _resolve(
    model_name: str, hf_model: Any, hub_kwargs: dict[str, Any] | None = None
) -> tuple[Any, str | None]:
    """(HF config, local directory or None). No network call when hf_model or a path is given."""
    official = _official_or_none(model_name)
    if hf_model is not None:
        config = hf_model.config
        if not getattr(config, "architectures", None):
            # A model built from a config in code has no architectures; its class says it.
            config = copy.copy(config)
            config.architectures = [type(hf_model).__name__]
        _refuse_other_kinds(model_name, _kind_of(config))
        if official is not None:
            _warn_if_not_official(official, config)
        return config, None
    if os.path.isdir(model_name):
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model_name, local_files_only=True)
        _refuse_other_kinds(model_name, _kind_of(config))
        return config, model_name
    if official is None:
        _raise_unknown(model_name, hub_kwargs or {})
    assert official is not None
    return official_models.official_hf_config(official), None


def _raise_unknown(model_name: str, hub_kwargs: dict[str, Any]) -> None:
    """A path that does not exist, or a name that is not official: say what works."""
    looks_like_path = os.path.sep in model_name or model_name.startswith(".")
    if looks_like_path and not looks_like_repo_id(model_name):
        raise FileNotFoundError(f"No such model directory: {model_name!r}")
    try:
        official_models.get_official_model_name(model_name)
    except ValueError as error:
        raise unknown_model_error(model_name, hub_kwargs) from error


def _warn_if_not_official(official: str, hf_config: Any) -> None:
    """Warn when hf_model's architecture facts differ from the official checkpoint's,
    compared in our own terms so that HF's renamed fields (rope_parameters) do not matter."""
    reference = official_models.official_hf_config(official)
    expected = config_fields(adapter_for(reference), reference)
    try:
        actual = config_fields(adapter_for(hf_config), hf_config)
    except ValueError:
        return  # the loader reports the real problem with a clearer message
    differing = {k: (actual.get(k), v) for k, v in expected.items() if actual.get(k) != v}
    if differing:
        warnings.warn(
            f"hf_model's config differs from the official {official} configuration "
            f"(field: (given, official)): {differing}. Using the given model's configuration.",
            stacklevel=3,
        )


def _load_tokenizer(name_or_path: str | None, local_only: bool) -> Any:
    return load_tokenizer(name_or_path, local_only, stacklevel=4)
