"""Device and dtype moves of HookedTransformer, as functions: cfg records each move, and tied
embeddings stay tied. HookedTransformer's `to`, `_apply` and `n_params` delegate here."""

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from transformer_lens.components.embed import Embed
from transformer_lens.components.unembed import Unembed
from transformer_lens.HookedTransformerConfig import HookedTransformerConfig


def record_move(
    cfg: HookedTransformerConfig,
    device_or_dtype: str | int | torch.device | torch.dtype | Tensor | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    print_details: bool,
) -> tuple[Any, ...]:
    """Record in cfg the device and dtype that `nn.Module.to(*args, **kwargs)` moves to (a
    device given as a string kept as it is, a torch.device as its string), log the move
    unless print_details is False, and return the positional arguments for that call."""
    if device_or_dtype is not None:
        args = (device_or_dtype, *args)
    device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
    given = kwargs.get("device", args[0] if args else None)
    if device is not None:
        cfg.device = given if isinstance(given, str) else str(device)
    if dtype is not None:
        cfg.dtype = dtype
    if print_details and (device is not None or dtype is not None):
        logging.info("Moved model to %s", device if device is not None else dtype)
    return args


def apply_keeping_ties(model: nn.Module, apply: Callable[[], object]) -> None:
    """Run `apply` (torch's `_apply`, which converts each parameter on its own and so would
    untie W_U from W_E), then tie them again; an untied W_U that changed dtype or device is
    put in the fastest layout for them."""
    pair = _embed_and_unembed(model)
    if pair is None:  # still being built, or no Unembed to keep tied
        apply()
        return
    embed, unembed = pair
    tied = unembed.is_tied_to(embed)
    before = (unembed.W_U.dtype, unembed.W_U.device)
    apply()
    if tied:
        unembed.tie_to(embed)
    elif (unembed.W_U.dtype, unembed.W_U.device) != before:
        unembed.use_fastest_layout()


def tieable_unembed(model: nn.Module) -> Unembed | None:
    """See HookedTransformer._tieable_unembed."""
    pair = _embed_and_unembed(model)
    return None if pair is None else pair[1]


def _embed_and_unembed(model: nn.Module) -> tuple[Embed, Unembed] | None:
    embed = getattr(model, "embed", None)
    if not isinstance(embed, Embed):
        return None
    unembed = getattr(model, "unembed", None)
    if isinstance(unembed, Unembed):
        return embed, unembed
    if isinstance(unembed, nn.Module):
        found = next((m for m in unembed.modules() if isinstance(m, Unembed)), None)
        return None if found is None else (embed, found)
    return None


def n_params(model: nn.Module) -> int:
    """Parameters actually stored, counting shared storage (tied embeddings) once."""
    storages = {p.untyped_storage().data_ptr(): p.numel() for p in model.parameters()}
    return sum(storages.values())
