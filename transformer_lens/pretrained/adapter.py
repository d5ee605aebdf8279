"""Adapter: how one Hugging Face model family maps onto HookedTransformer, declared as data.

A family declares (1) the HF architecture names it handles, (2) a config map from our
field to an HF attribute or a small function of the HF config, (3) a weight map from our
state-dict key to an HF key and a named transform, and (4) the HF config fields it handles
or deliberately ignores: any other field whose value differs from the HF default raises.
It may also declare (5) checks: functions of the HF config that only validate, refusing a
feature we do not implement; they run before the config map is read.

A family derives from another one way only, `base.extend(...)`: the deltas it declares.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig

ConfigValue = str | Callable[[Any], Any]
Check = Callable[[Any], None]
"""A function of the HF config that only validates: it raises ValueError, naming the field."""

# Fields every PretrainedConfig carries that never change the forward pass.
COMMON_IGNORED_FIELDS = frozenset(
    {
        "architectures", "_name_or_path", "transformers_version", "torch_dtype", "dtype",
        "model_type", "pad_token_id", "bos_token_id", "eos_token_id", "use_cache",
        "initializer_range", "attention_dropout", "output_attentions", "output_hidden_states",
        "return_dict", "id2label", "label2id", "_attn_implementation_autoset",
        "_attn_implementation", "chunk_size_feed_forward", "problem_type", "is_encoder_decoder",
        "quantization_config", "tie_word_embeddings",
    }
)  # fmt: skip


TransformFunction = Callable[..., Tensor]
"""(HF tensor, cfg) -> our tensor; one that writes out also takes `out=`."""


@dataclass(frozen=True)
class Transform:
    """A named function from an HF tensor to ours, with what the streaming loader may rely
    on: `is_view`, it only views its input (no arithmetic, no copy), so a parameter may be a
    view of the checkpoint file itself; `row_axis`, it acts on each HF row alone and the rows
    become this axis of ours, so a vocabulary matrix can be loaded a block of rows at a
    time; `writes_out`, it takes `out=` and can write straight into a parameter's rows."""

    function: TransformFunction
    is_view: bool = False
    row_axis: int | None = None
    writes_out: bool = False

    @property
    def name(self) -> str:
        return str(getattr(self.function, "__name__", repr(self.function)))

    def __call__(
        self, weight: Tensor, cfg: HookedTransformerConfig, out: Tensor | None = None
    ) -> Tensor:
        if out is None:
            return self.function(weight, cfg)
        if not self.writes_out:
            raise TypeError(f"transform {self.name} cannot write into a given tensor")
        return self.function(weight, cfg, out=out)


def as_transform(transform: Transform | TransformFunction) -> Transform:
    """A Transform as it is; a plain function as a Transform with no properties."""
    return transform if isinstance(transform, Transform) else Transform(transform)


@dataclass(frozen=True)
class WeightSource:
    """Our key <- one of `hf_keys` (the first present) through `transform`."""

    hf_keys: tuple[str, ...]
    transform: Transform
    build: Callable[[HookedTransformerConfig], Tensor] | None = None  # when hf_keys is empty


@dataclass(frozen=True)
class Adapter:
    architectures: tuple[str, ...]
    config: Mapping[str, ConfigValue]
    weights: Mapping[str, WeightSource]  # keys with "{i}" repeat per layer
    handled_fields: frozenset[str]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    checks: tuple[Check, ...] = ()

    def __post_init__(self) -> None:
        hidden = sorted(ours for ours in self.config if ours.startswith("_"))
        if hidden:
            raise ValueError(
                f"config map entries {hidden} are not config fields: declare a check that only "
                "validates in checks="
            )

    def extend(
        self, *, remove: Mapping[str, Iterable[str]] | None = None, **changes: Any
    ) -> Adapter:
        """The one way a family derives from this one: a copy without the entries `remove`
        names ({"config": fields, "fixed": fields, "weights": keys, "handled_fields": names}),
        whose mappings and sets are then updated (not replaced) by the given ones, whose
        `checks` get the given ones appended, and whose `architectures` are the given ones."""
        base = self._without(remove or {})
        merged: dict[str, Any] = {}
        for name, value in changes.items():
            current = getattr(base, name)
            if name == "architectures":
                merged[name] = tuple(value)
            elif name == "checks":
                merged[name] = current + tuple(value)
            elif isinstance(current, frozenset):
                merged[name] = current | frozenset(value)
            else:
                merged[name] = {**current, **value}
        return dataclasses.replace(base, **merged)

    def _without(self, remove: Mapping[str, Iterable[str]]) -> Adapter:
        kept: dict[str, Any] = {}
        for name, entries in remove.items():
            current = getattr(self, name)
            if not isinstance(current, (Mapping, frozenset)):
                raise TypeError(f"Adapter.{name} has no named entries to remove")
            dropped = frozenset(entries)
            absent = sorted(dropped - set(current))
            if absent:
                raise ValueError(f"cannot remove {absent} from Adapter.{name}: not there")
            if isinstance(current, frozenset):
                kept[name] = current - dropped
            else:
                kept[name] = {key: value for key, value in current.items() if key not in dropped}
        return dataclasses.replace(self, **kept)


def hf(*keys: str, transform: Transform | TransformFunction | None = None) -> WeightSource:
    return WeightSource(keys, unchanged if transform is None else as_transform(transform))


def optional(
    *keys: str, transform: Transform | TransformFunction | None = None, otherwise: WeightSource
) -> WeightSource:
    """The first present HF key through `transform`, or `otherwise`'s builder when the
    checkpoint has none of them (a bias that only some configurations carry)."""
    chosen = unchanged if transform is None else as_transform(transform)
    return WeightSource(keys, chosen, otherwise.build)


# ----- named transforms: HF tensor -> our tensor ----------------------------------------
def view_only(function: TransformFunction) -> Transform:
    """A transform that only views its input (see Transform.is_view)."""
    return Transform(function, is_view=True)


def _unchanged(weight: Tensor, cfg: HookedTransformerConfig) -> Tensor:
    return weight


def _transposed(weight: Tensor, cfg: HookedTransformerConfig) -> Tensor:
    """nn.Linear [out, in] -> ours [in, out] (a view)."""
    return weight.T


unchanged = Transform(_unchanged, is_view=True, row_axis=0)
transposed = Transform(_transposed, is_view=True, row_axis=1)


def heads_in(n_heads_field: str) -> Transform:
    """q/k/v_proj [heads * d_head, d_model] -> [heads, d_model, d_head] (a view)."""

    def transform(weight: Tensor, cfg: HookedTransformerConfig) -> Tensor:
        heads = _heads(cfg, n_heads_field)
        return weight.view(heads, cfg.d_head, cfg.d_model).transpose(1, 2)

    transform.__name__ = f"heads_in({n_heads_field})"
    return view_only(transform)


@view_only
def heads_out(weight: Tensor, cfg: HookedTransformerConfig) -> Tensor:
    """o_proj [d_model, heads * d_head] -> [heads, d_head, d_model] (a view)."""
    return weight.view(cfg.d_model, cfg.n_heads, cfg.d_head).permute(1, 2, 0)


def head_bias(n_heads_field: str) -> Transform:
    def transform(bias: Tensor, cfg: HookedTransformerConfig) -> Tensor:
        return bias.view(_heads(cfg, n_heads_field), cfg.d_head)

    transform.__name__ = f"head_bias({n_heads_field})"
    return view_only(transform)


def _plus_one(weight: Tensor, cfg: HookedTransformerConfig) -> Tensor:
    """Gemma RMSNorm computes x * (1 + w) in float32; we store 1 + w."""
    return weight.float() + 1.0


def _times_sqrt_d_model(
    weight: Tensor, cfg: HookedTransformerConfig, out: Tensor | None = None
) -> Tensor:
    """Gemma scales embeddings by sqrt(d_model), rounded to the weight dtype first as HF
    does. `out`: write the result there (a parameter's rows) instead of a new tensor."""
    scale = torch.tensor(cfg.d_model**0.5, dtype=torch.float32).to(weight.dtype)
    return torch.mul(weight, scale, out=out)


plus_one = Transform(_plus_one)
times_sqrt_d_model = Transform(_times_sqrt_d_model, row_axis=0, writes_out=True)


def _heads(cfg: HookedTransformerConfig, n_heads_field: str) -> int:
    value = getattr(cfg, n_heads_field)
    return cfg.n_heads if value is None else int(value)


def zeros(*shape_fields: str) -> WeightSource:
    """A weight HF does not have (a bias): zeros of the configured shape."""

    def build(cfg: HookedTransformerConfig) -> Tensor:
        shape = [_heads(cfg, f) if f.startswith("n_") else getattr(cfg, f) for f in shape_fields]
        return torch.zeros(shape, dtype=cfg.dtype)

    return WeightSource((), unchanged, build)
