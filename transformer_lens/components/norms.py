"""Pick the norm module a config asks for."""

from torch import nn

from transformer_lens.components.layer_norm import LayerNorm, LayerNormPre
from transformer_lens.components.rms_norm import RMSNorm, RMSNormPre
from transformer_lens.HookedTransformerConfig import HookedTransformerConfig

_NORMS: dict[str | None, type[nn.Module]] = {
    "LN": LayerNorm,
    "LNPre": LayerNormPre,
    "RMS": RMSNorm,
    "RMSPre": RMSNormPre,
    None: nn.Identity,
}


def make_norm(
    cfg: HookedTransformerConfig,
    normalization_type: str | None = None,
    length: int | None = None,
) -> nn.Module:
    """The norm module for normalization_type (cfg's by default): LayerNorm, LayerNormPre,
    RMSNorm, RMSNormPre, or nn.Identity for None; `length` is its width (d_model by
    default)."""
    kind = cfg.normalization_type if normalization_type is None else normalization_type
    if kind not in _NORMS:
        raise ValueError(f"Unknown normalization_type {kind!r}; expected one of {list(_NORMS)}")
    norm = _NORMS[kind]
    return nn.Identity() if norm is nn.Identity else norm(cfg, length)


def make_final_norm(cfg: HookedTransformerConfig) -> nn.Module:
    """ln_final: RMS-style when final_rms is set although the blocks use LayerNorm."""
    if cfg.final_rms and cfg.normalization_type in ("LN", "LNPre"):
        return make_norm(cfg, "RMS" if cfg.normalization_type == "LN" else "RMSPre")
    return make_norm(cfg)


def make_post_norm(cfg: HookedTransformerConfig) -> nn.Module:
    """Gemma-2's post-attention/post-MLP norms: they keep their weights even when the
    pre-norms were folded, because nothing follows them that could absorb the weight."""
    folded_to_weighted = {"LNPre": "LN", "RMSPre": "RMS"}
    kind = cfg.normalization_type
    return make_norm(cfg, folded_to_weighted.get(kind or "", kind))
