"""Device and dtype moves of HookedTransformer: cfg records them, tied embeddings stay tied."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import Tensor, nn

from transformer_lens.components.embed import Embed
from transformer_lens.components.unembed import Unembed

if TYPE_CHECKING:
    from transformer_lens.HookedTransformerConfig import HookedTransformerConfig

Model = TypeVar("Model", bound="DevicesMixin")


class DevicesMixin(nn.Module):
    """`to`, `cuda`, `cpu`, `mps` and `n_params`; needs the model's `embed` and `unembed`."""

    cfg: HookedTransformerConfig
    embed: Embed

    def to(  # type: ignore[override]
        self: Model,
        device_or_dtype: str | int | torch.device | torch.dtype | Tensor | None = None,
        *args: Any,
        print_details: bool = True,
        **kwargs: Any,
    ) -> Model:
        """`nn.Module.to` that also records the new device and dtype in cfg and keeps tied
        embeddings tied; logs the move unless print_details is False. Returns the model.

        cfg.device keeps a device given as a string as it is ("cpu", "cuda:1"), and a
        torch.device as its string (classic kept only the type, dropping the index)."""
        if device_or_dtype is not None:
            args = (device_or_dtype, *args)
        device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        given = kwargs.get("device", args[0] if args else None)
        if device is not None:
            self.cfg.device = given if isinstance(given, str) else str(device)
        if dtype is not None:
            self.cfg.dtype = dtype
        if print_details and (device is not None or dtype is not None):
            logging.info("Moved model to %s", device if device is not None else dtype)
        return super().to(*args, **kwargs)

    def _apply(self: Model, fn: Any, recurse: bool = True) -> Model:
        """Every conversion (`to`, `half`, `cuda`, ...) keeps tied embeddings tied (torch
        converts each parameter on its own, which would untie them) and puts an untied W_U
        that changed dtype or device in the fastest layout for them."""
        unembed = self._tieable_unembed()
        if unembed is None:  # still being built, or no Unembed to keep tied
            return super()._apply(fn, recurse)
        tied = unembed.is_tied_to(self.embed)
        before = (unembed.W_U.dtype, unembed.W_U.device)
        super()._apply(fn, recurse)
        if tied:
            unembed.tie_to(self.embed)
        elif (unembed.W_U.dtype, unembed.W_U.device) != before:
            unembed.use_fastest_layout()
        return self

    def cuda(self: Model, device: int | torch.device | None = None) -> Model:  # type: ignore[override]
        """Move to a CUDA device ("cuda" by default) through `to`."""
        return self.to("cuda" if device is None else device)

    def cpu(self: Model) -> Model:
        """Move to the CPU through `to`."""
        return self.to("cpu")

    def mps(self: Model) -> Model:
        """Move to Apple's MPS device through `to`."""
        return self.to("mps")

    def n_params(self) -> int:
        """Parameters actually stored, counting shared storage (tied embeddings) once."""
        storages = {p.untyped_storage().data_ptr(): p.numel() for p in self.parameters()}
        return sum(storages.values())

    def _tieable_unembed(self) -> Unembed | None:
        """The Unembed whose W_U may share W_E's storage: `self.unembed`, or the Unembed a
        replacement module wraps (circuit-tracer wraps it); None if there is none."""
        if not isinstance(getattr(self, "embed", None), Embed):
            return None
        unembed = getattr(self, "unembed", None)
        if isinstance(unembed, Unembed):
            return unembed
        if isinstance(unembed, nn.Module):
            return next((m for m in unembed.modules() if isinstance(m, Unembed)), None)
        return None
