"""TransformerBlock: residual wiring and the block-level hooks. No family logic here."""

from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from transformer_lens.components.attention import (
    Attention,
    KeyInput,
    QueryInput,
    ValueInput,
    attention_input_plan,
    broadcast_heads,
    shared_across_heads,
)
from transformer_lens.components.grouped_query_attention import GroupedQueryAttention
from transformer_lens.components.mlps.gated_mlp import GatedMLP
from transformer_lens.components.mlps.mlp import MLP
from transformer_lens.components.norms import make_norm, make_post_norm
from transformer_lens.hook_points import HookPoint
from transformer_lens.HookedTransformerConfig import ConfigOrDict, HookedTransformerConfig
from transformer_lens.past_key_value_caching import HookedTransformerKeyValueCacheEntry

Residual = Float[Tensor, "batch pos d_model"]


class TransformerBlock(nn.Module):
    """One layer: ln1 and attention, then (unless attn_only) ln2 and the MLP, each added to
    the residual stream; parallel when cfg.parallel_attn_mlp."""

    def __init__(self, cfg: ConfigOrDict, block_index: int):
        super().__init__()
        self.cfg = cfg = HookedTransformerConfig.unwrap(cfg)
        self.block_index = block_index
        attn_type = cfg.attn_types[block_index] if cfg.attn_types is not None else "global"
        attention = GroupedQueryAttention if cfg.n_key_value_heads is not None else Attention
        self.ln1 = make_norm(cfg)
        self.attn = attention(cfg, attn_type, block_index)
        if cfg.use_normalization_before_and_after:
            self.ln1_post = make_post_norm(cfg)
        if not cfg.attn_only:
            if cfg.num_experts is not None:
                raise NotImplementedError("Mixture-of-experts MLPs are not supported yet")
            self.ln2 = make_norm(cfg)
            self.mlp: nn.Module = GatedMLP(cfg) if cfg.gated_mlp else MLP(cfg)
            if cfg.use_normalization_before_and_after:
                self.ln2_post = make_post_norm(cfg)
        # Per-head inputs are broadcast views; a hooked one is copied first so that hook
        # functions may edit it in place, as they could in classic TransformerLens.
        self.hook_attn_in = HookPoint(copy_before_hooks=True)
        self.hook_q_input = HookPoint(copy_before_hooks=True)
        self.hook_k_input = HookPoint(copy_before_hooks=True)
        self.hook_v_input = HookPoint(copy_before_hooks=True)
        self.hook_mlp_in = HookPoint()
        self.hook_attn_out = HookPoint()
        self.hook_mlp_out = HookPoint()
        self.hook_resid_pre = HookPoint()
        if not cfg.attn_only and not cfg.parallel_attn_mlp:
            self.hook_resid_mid = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(
        self,
        resid_pre: Residual,
        positions: Int[Tensor, "batch_or_1 pos"],
        key_padding_mask: Bool[Tensor, "batch key_pos"] | None = None,
        past_kv_cache_entry: HookedTransformerKeyValueCacheEntry | None = None,
        shortformer_pos_embed: Residual | None = None,
    ) -> Residual:
        """The residual after this block, [batch, pos, d_model] -> [batch, pos, d_model].

        positions [batch or 1, pos] and key_padding_mask [batch, key_pos] are as prepared by
        the model's forward; past_kv_cache_entry is this layer's key/value cache entry;
        shortformer_pos_embed is added to the query and key inputs only."""
        resid_pre = self.hook_resid_pre(resid_pre)
        query_input, key_input, value_input = self._attention_inputs(
            resid_pre, shortformer_pos_embed
        )
        attn_out = self.attn(
            query_input, key_input, value_input, positions, key_padding_mask, past_kv_cache_entry
        )
        if self.cfg.use_normalization_before_and_after:
            attn_out = self.ln1_post(attn_out)
        attn_out = self.hook_attn_out(attn_out)
        if self.cfg.attn_only:
            return self.hook_resid_post(resid_pre + attn_out)
        if self.cfg.parallel_attn_mlp:
            # (attention + MLP) + residual: the order in which HF's parallel blocks (GPT-NeoX,
            # GPT-J, Phi) round their sums in half precision.
            return self.hook_resid_post((attn_out + self._mlp(resid_pre)) + resid_pre)
        resid_mid = self.hook_resid_mid(resid_pre + attn_out)
        return self.hook_resid_post(resid_mid + self._mlp(resid_mid))

    def _mlp(self, resid: Residual) -> Residual:
        if self.cfg.use_hook_mlp_in:
            # A copy, so that a hook editing mlp_in in place leaves the residual alone.
            resid = self.hook_mlp_in(resid.clone())
        mlp_out = self.mlp(self.ln2(resid))
        if self.cfg.use_normalization_before_and_after:
            mlp_out = self.ln2_post(mlp_out)
        return self.hook_mlp_out(mlp_out)

    def _attention_inputs(
        self, resid_pre: Residual, shortformer_pos_embed: Residual | None
    ) -> tuple[QueryInput, KeyInput, ValueInput]:
        plan = attention_input_plan(self.cfg)
        # Shortformer: positions reach queries and keys only, never values or the residual.
        positional = (
            resid_pre if shortformer_pos_embed is None else resid_pre + shortformer_pos_embed
        )
        if plan.mode == "shared":
            normalized = self.ln1(resid_pre)
            with_positions = normalized if positional is resid_pre else self.ln1(positional)
            return with_positions, with_positions, normalized
        if plan.mode == "attn_in":
            attn_in = self.hook_attn_in(broadcast_heads(resid_pre, plan.query_heads))
            if shortformer_pos_embed is None:
                return self._normalize_distinct((attn_in, attn_in, attn_in))
            shared = shared_across_heads(attn_in)
            if shared is not None:
                with_positions = broadcast_heads(shared + shortformer_pos_embed, plan.query_heads)
            else:
                with_positions = attn_in + shortformer_pos_embed[:, :, None, :]
            return self._normalize_distinct((with_positions, with_positions, attn_in))
        return self._normalize_distinct(
            (
                self.hook_q_input(broadcast_heads(positional, plan.query_heads)),
                self.hook_k_input(broadcast_heads(positional, plan.kv_heads)),
                self.hook_v_input(broadcast_heads(resid_pre, plan.kv_heads)),
            )
        )

    def _normalize_distinct(
        self, inputs: tuple[Tensor, Tensor, Tensor]
    ) -> tuple[QueryInput, KeyInput, ValueInput]:
        """ln1 once per distinct input. An input whose head axis is a broadcast is reduced
        to its shared [batch, pos, d_model] tensor; equal views share one normalisation."""
        normalized: dict[tuple[int, tuple[int, ...], tuple[int, ...]], Tensor] = {}
        outputs = []
        for per_head in inputs:
            shared = shared_across_heads(per_head)
            source = per_head if shared is None else shared
            key = (source.data_ptr(), tuple(source.shape), source.stride())
            if key not in normalized:
                normalized[key] = self.ln1(source)
            outputs.append(normalized[key])
        return outputs[0], outputs[1], outputs[2]
