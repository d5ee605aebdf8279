"""The config flags that switch hook points on, and the reason a hook point cannot fire."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transformer_lens.components.attention import check_attn_in_allowed

if TYPE_CHECKING:
    from transformer_lens.HookedTransformerConfig import HookedTransformerConfig

# Hook names that fire only under a config flag: suffix -> (flag, how to turn it on).
_FLAGGED_HOOKS = {
    "hook_q_input": ("use_split_qkv_input", "call model.set_use_split_qkv_input(True)"),
    "hook_k_input": ("use_split_qkv_input", "call model.set_use_split_qkv_input(True)"),
    "hook_v_input": ("use_split_qkv_input", "call model.set_use_split_qkv_input(True)"),
    "hook_attn_in": ("use_attn_in", "call model.set_use_attn_in(True)"),
    "hook_result": ("use_attn_result", "call model.set_use_attn_result(True)"),
    "hook_mlp_in": ("use_hook_mlp_in", "call model.set_use_hook_mlp_in(True)"),
    "hook_tokens": ("use_hook_tokens", "set model.cfg.use_hook_tokens = True"),
}


class HookFlagsMixin:
    """`set_use_*` flag setters of HookedTransformer and the check `add_hook` asks."""

    cfg: HookedTransformerConfig

    def _hook_unavailable_reason(self, name: str) -> str | None:
        suffix = name.rsplit(".", 1)[-1]
        if self.cfg.attn_only and suffix in ("hook_mlp_in", "hook_mlp_out"):
            return f"{name} never fires on an attention-only model (cfg.attn_only=True)"
        if suffix not in _FLAGGED_HOOKS:
            return None
        flag, how = _FLAGGED_HOOKS[suffix]
        if getattr(self.cfg, flag):
            return None
        if suffix == "hook_attn_in" and self.cfg.is_grouped:
            how = (
                "on this grouped model call set_ungroup_grouped_query_attention(True), then " + how
            )
        return f"{name} only fires when cfg.{flag} is True; {how} first"

    def set_use_attn_result(self, use_attn_result: bool) -> None:
        """Turn on or off `attn.hook_result`, each head's output [batch, pos, head_index,
        d_model] before heads are summed. Costs a tensor n_heads times the size of the
        residual per layer, and a slower einsum for the output projection; grouping makes no
        difference (heads here are query heads)."""
        self.cfg.use_attn_result = use_attn_result

    def set_use_split_qkv_input(self, use_split_qkv_input: bool) -> None:
        """Turn on or off `hook_q_input` [batch, pos, head_index, d_model] and `hook_k_input`
        / `hook_v_input` [batch, pos, kv_head_index, d_model]: the residual fed to each head's
        Q, K and V separately, before ln1. On a grouped model the K/V inputs have one entry per
        key/value head (per query head once ungrouped). The inputs are broadcast views, so
        they cost nothing until a hook is attached; a hooked input is copied (one residual
        per head) and projected head by head. Refused while use_attn_in is on."""
        if use_split_qkv_input and self.cfg.use_attn_in:
            raise ValueError("use_attn_in is on; turn it off before enabling use_split_qkv_input")
        self.cfg.use_split_qkv_input = use_split_qkv_input

    def set_use_hook_mlp_in(self, use_hook_mlp_in: bool) -> None:
        """Turn on or off `hook_mlp_in` [batch, pos, d_model], the residual the MLP reads
        (before ln2). Costs one copy of the residual per layer. Refused on attention-only
        models."""
        if use_hook_mlp_in and self.cfg.attn_only:
            raise ValueError("hook_mlp_in cannot be used with an attention-only model")
        self.cfg.use_hook_mlp_in = use_hook_mlp_in

    def set_use_attn_in(self, use_attn_in: bool) -> None:
        """Turn on or off `hook_attn_in` [batch, pos, head_index, d_model]: one residual per
        query head, read by that head's Q, K and V, before ln1. Free until hooked; a hooked
        input is copied (n_heads times the residual) and projected head by head, keys and
        values included. Every query head needs keys and values of its own, so a grouped model
        must be ungrouped first (`set_ungroup_grouped_query_attention(True)`, with its memory
        cost); otherwise this raises. Refused while use_split_qkv_input is on."""
        if use_attn_in:
            check_attn_in_allowed(self.cfg)
            if self.cfg.use_split_qkv_input:
                raise ValueError(
                    "use_split_qkv_input is on; turn it off before enabling use_attn_in"
                )
        self.cfg.use_attn_in = use_attn_in

    def set_ungroup_grouped_query_attention(self, ungroup_grouped_query_attention: bool) -> None:
        """On a grouped-query model, show keys and values per query head: hook_k, hook_v,
        hook_rot_k, hook_k_input, hook_v_input and the key/value cache get n_heads heads
        instead of n_key_value_heads, each key/value head repeated for the query heads that
        read it. This multiplies the memory of keys, values and the cache by the group size;
        outputs do not change. Needed for use_attn_in, so it cannot be turned off while that
        is on. No effect on models that are not grouped."""
        if not ungroup_grouped_query_attention and self.cfg.use_attn_in and self.cfg.is_grouped:
            raise ValueError(
                "use_attn_in needs ungrouped attention on this model; turn it off first"
            )
        self.cfg.ungroup_grouped_query_attention = ungroup_grouped_query_attention
