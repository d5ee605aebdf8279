"""from_pretrained's arguments as one checked value: what to load, how to process it, and
where the model goes. The public methods keep classic's signatures; everything below them
reads this instead of a long parameter list."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from transformer_lens.HookedTransformerConfig import resolve_dtype
from transformer_lens.pretrained import hub
from transformer_lens.weight_processing import ProcessingFlags

_REJECTED_KWARGS = ("load_in_8bit", "load_in_4bit", "quantization_config")
# Keyword arguments from_pretrained takes beyond its named parameters; share_hf_tensors is
# verify's (unprocessed weights alias hf_model's tensors), not a documented option.
_EXTRA_KWARGS = ("torch_dtype", "progress_bar", "share_hf_tensors", *hub.HUB_KWARGS)


@dataclass(frozen=True)
class LoadRequest:
    model_name: str
    flags: ProcessingFlags
    hf_model: Any = None
    tokenizer: Any = None
    checkpoint_index: int | None = None
    checkpoint_value: int | None = None
    # the config's fields (get_pretrained_model_config's keyword arguments)
    config_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    default_padding_side: str = "right"
    move_to_device: bool = True
    progress_bar: bool = False
    share_hf_tensors: bool = False
    hub_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> LoadRequest:
        """The request from from_pretrained's `locals()`: its named parameters and its
        `from_pretrained_kwargs`, checked (quantised loading refused, unknown keywords a
        TypeError, torch_dtype an alias of dtype)."""
        extra = dict(arguments["from_pretrained_kwargs"])
        rejected = [k for k in _REJECTED_KWARGS if extra.get(k)]
        if rejected:
            raise ValueError(f"Quantised loading is not supported: {rejected}")
        unknown = sorted(k for k in extra if k not in (*_EXTRA_KWARGS, *_REJECTED_KWARGS))
        if unknown:
            raise TypeError(f"from_pretrained got unexpected keyword arguments: {unknown}")
        config_names = ("device", "n_devices", "default_prepend_bos", "first_n_layers", "n_ctx")
        config_options = {name: arguments[name] for name in config_names}
        config_options["dtype"] = resolve_dtype(extra.get("torch_dtype", arguments["dtype"]))
        return cls(
            model_name=arguments["model_name"],
            flags=ProcessingFlags.from_arguments(arguments),
            hf_model=arguments["hf_model"],
            tokenizer=arguments["tokenizer"],
            checkpoint_index=arguments["checkpoint_index"],
            checkpoint_value=arguments["checkpoint_value"],
            config_options=config_options,
            default_padding_side=arguments["default_padding_side"],
            move_to_device=arguments["move_to_device"],
            progress_bar=bool(extra.get("progress_bar", False)),
            share_hf_tensors=bool(extra.get("share_hf_tensors", False)),
            hub_kwargs={k: extra[k] for k in hub.HUB_KWARGS if k in extra},
        )
