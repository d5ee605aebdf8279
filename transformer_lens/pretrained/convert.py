"""Apply an adapter: HF config -> our config fields, HF tensors -> our state dict."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
from transformer_lens.pretrained.adapter import COMMON_IGNORED_FIELDS, Adapter, WeightSource

_LAYER_INDEX = re.compile(r"(?:^|\.)(?:layers|h)\.(\d+)\.")
_OUR_LAYER_INDEX = re.compile(r"blocks\.(\d+)\.")
# HF keys that hold derived values (old checkpoints saved rotary frequencies).
# HF keys that hold derived values: rotary frequencies, and the causal-mask buffers that
# older GPT-2 and GPT-NeoX checkpoints saved (the leading dot keeps `c_attn.bias` out).
_DERIVED_HF_KEYS = (
    "rotary_emb.inv_freq",
    ".attn.bias",
    ".attn.masked_bias",
    ".attention.bias",
    ".attention.masked_bias",
)
_GROUPED_TO_PER_HEAD = {"attn._W_K": "attn.W_K", "attn._W_V": "attn.W_V", "attn._b_K": "attn.b_K", "attn._b_V": "attn.b_V"}  # fmt: skip


def config_fields(adapter: Adapter, hf_config: Any) -> dict[str, Any]:
    """Our config fields for this HF config. Unhandled HF fields raise, naming the field;
    then the adapter's checks run, then its config map is read."""
    check_handled_fields(adapter, hf_config)
    for check in adapter.checks:
        check(hf_config)
    fields: dict[str, Any] = dict(adapter.fixed)
    for ours, source in adapter.config.items():
        fields[ours] = getattr(hf_config, source) if isinstance(source, str) else source(hf_config)
    fields["original_architecture"] = adapter.architectures[0]
    return fields


def check_handled_fields(adapter: Adapter, hf_config: Any) -> None:
    defaults = type(hf_config)().to_dict()
    unhandled = {
        key: value
        for key, value in hf_config.to_dict().items()
        if key not in adapter.handled_fields
        and key not in COMMON_IGNORED_FIELDS
        and not key.startswith("_")
        and (key not in defaults or defaults[key] != value)
    }
    if unhandled:
        raise ValueError(
            f"HF config fields not handled by the {adapter.architectures[0]} adapter: {unhandled}. "
            "Loading would silently ignore them and could give wrong logits."
        )


@dataclass(frozen=True)
class PlannedWeight:
    """One entry of our state dict: where it comes from, and how it is made."""

    key: str
    hf_key: str | None
    source: WeightSource

    @property
    def layer(self) -> int | None:
        match = _OUR_LAYER_INDEX.match(self.key)
        return int(match.group(1)) if match else None

    def load(self, cfg: HookedTransformerConfig, get_tensor: Callable[[str], Tensor]) -> Tensor:
        if self.hf_key is not None:
            return self.made_from(get_tensor(self.hf_key), cfg)
        assert self.source.build is not None, f"{self.key} has neither an HF key nor a builder"
        return self.source.build(cfg)

    def made_from(self, hf_tensor: Tensor, cfg: HookedTransformerConfig) -> Tensor:
        """Our weight from HF's tensor (or a block of its rows). The tensor is first rounded
        to the model's dtype, as HF's from_pretrained(dtype=...) holds it, so that transforms
        computed in float32 (Gemma's 1 + w, its embedding scale) start from HF's values."""
        if hf_tensor.is_floating_point() and hf_tensor.dtype != cfg.dtype:
            hf_tensor = hf_tensor.to(cfg.dtype)
        return self.source.transform(hf_tensor, cfg)


def plan_state_dict(
    adapter: Adapter, cfg: HookedTransformerConfig, available: Iterable[str]
) -> list[PlannedWeight]:
    """Where each of our weights comes from, checked before any tensor is read: every HF
    weight must be used and every weight we need must be present."""
    available_keys = set(available)
    used: set[str] = set()
    missing: list[str] = []
    planned: list[PlannedWeight] = []
    for template, source in adapter.weights.items():
        layers = range(cfg.n_layers) if "{i}" in template else [None]
        for layer in layers:
            ours = template.format(i=layer) if layer is not None else template
            hf_keys = [key.format(i=layer) for key in source.hf_keys]
            present = [key for key in hf_keys if key in available_keys]
            if hf_keys and not present and source.build is None:
                missing.append(" | ".join(hf_keys))
                continue
            hf_key = present[0] if present else None
            if hf_key is not None:
                used.add(hf_key)
            planned.append(PlannedWeight(_storage_name(ours, cfg), hf_key, source))
    unused = [key for key in available_keys - used if not _skippable(key, cfg)]
    if missing or unused:
        raise ValueError(
            f"Checkpoint does not match the {adapter.architectures[0]} adapter: "
            f"missing HF keys {sorted(missing)}; HF keys the adapter does not use {sorted(unused)}"
        )
    return planned


def convert_state_dict(
    adapter: Adapter,
    cfg: HookedTransformerConfig,
    get_tensor: Callable[[str], Tensor],
    available: Iterable[str],
) -> dict[str, Tensor]:
    """Our whole (unprocessed) state dict from an HF source."""
    return {p.key: p.load(cfg, get_tensor) for p in plan_state_dict(adapter, cfg, available)}


def _storage_name(key: str, cfg: HookedTransformerConfig) -> str:
    """Models without n_key_value_heads store K/V per head under the classic names."""
    if cfg.n_key_value_heads is not None:
        return key
    for grouped, per_head in _GROUPED_TO_PER_HEAD.items():
        if key.endswith(grouped):
            return key[: -len(grouped)] + per_head
    return key


def _skippable(hf_key: str, cfg: HookedTransformerConfig) -> bool:
    if hf_key.endswith(_DERIVED_HF_KEYS):
        return True
    match = _LAYER_INDEX.search(hf_key)
    return match is not None and int(match.group(1)) >= cfg.n_layers  # first_n_layers
