"""The one attention implementation, for multi-head, grouped-query and multi-query models.

Axis glossary used across the package:
    batch          sequences in the batch
    pos            token positions of the current forward (query_pos / key_pos inside attention)
    d_model        residual stream width
    head_index     query heads (n_heads)
    kv_head_index  key/value heads: n_key_value_heads, or n_heads when ungrouped / not grouped
    d_head         width of one head
    d_mlp, d_vocab, layer

Multi-head attention is the case n_key_value_heads == n_heads, multi-query is 1. Query head
h reads key/value head h // group_size (group_size = n_heads // n_key_value_heads), the
layout of `repeat_interleave` and of Hugging Face's `repeat_kv`. The broadcast never stores
repeated keys or values: queries are regrouped to [batch, kv_head_index, group * query_pos,
d_head] so each key/value head meets its whole group in one matmul.

Inputs arrive already normalised by the block, each either shared by every head
`[batch, pos, d_model]` or given per head `[batch, pos, heads, d_model]` (split Q/K/V input
or attn_in that a hook edited).
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from transformer_lens.components._bias import unless_zero
from transformer_lens.components._layout import (
    head_input_parameter,
    head_output_parameter,
    linear_weight_from_heads,
    linear_weight_to_model,
)
from transformer_lens.components._linear import linear
from transformer_lens.components.rms_norm import RMSNorm
from transformer_lens.components.rotary import apply_rotary, rotary_tables
from transformer_lens.FactoredMatrix import FactoredMatrix
from transformer_lens.hook_points import HookPoint
from transformer_lens.HookedTransformerConfig import ConfigOrDict, HookedTransformerConfig
from transformer_lens.past_key_value_caching import (
    HookedTransformerKeyValueCacheEntry,
    key_value_heads_exposed,
)

# Shared by every head, or one copy per head; the three inputs may differ in head count.
QueryInput = (
    Float[Tensor, "batch pos d_model"] | Float[Tensor, "batch pos query_input_heads d_model"]
)
KeyInput = Float[Tensor, "batch pos d_model"] | Float[Tensor, "batch pos key_input_heads d_model"]
ValueInput = (
    Float[Tensor, "batch pos d_model"] | Float[Tensor, "batch pos value_input_heads d_model"]
)


class InputPlan(NamedTuple):
    """How the block feeds attention: one shared input, per-head copies, or attn_in."""

    mode: str  # "shared" | "split" | "attn_in"
    query_heads: int
    kv_heads: int


def attention_input_plan(cfg: HookedTransformerConfig) -> InputPlan:
    """Decide the per-head input copies under the current flags, or refuse impossible ones."""
    kv_heads = key_value_heads_exposed(cfg)
    if cfg.use_attn_in and cfg.use_split_qkv_input:
        raise ValueError(
            "use_attn_in and use_split_qkv_input cannot both be on: hook_attn_in feeds Q, K and V "
            "together, hook_q_input/hook_k_input/hook_v_input feed them separately. Turn one off."
        )
    if cfg.use_attn_in:
        check_attn_in_allowed(cfg)
        return InputPlan("attn_in", cfg.n_heads, cfg.n_heads)
    if cfg.use_split_qkv_input:
        return InputPlan("split", cfg.n_heads, kv_heads)
    return InputPlan("shared", cfg.n_heads, kv_heads)


def check_attn_in_allowed(cfg: HookedTransformerConfig) -> None:
    """Raise ValueError if use_attn_in cannot work: a grouped model that is not ungrouped."""
    if cfg.is_grouped and not cfg.ungroup_grouped_query_attention:
        raise ValueError(
            f"use_attn_in needs one input per query head for Q, K and V, but this model groups "
            f"{cfg.n_heads} query heads onto {cfg.n_key_value_heads} key/value heads. Use "
            "use_split_qkv_input (hook_q_input per query head, hook_k_input/hook_v_input per "
            "key/value head) or call set_ungroup_grouped_query_attention(True) first."
        )


def shared_across_heads(
    x: Float[Tensor, "batch pos heads d_model"],
) -> Float[Tensor, "batch pos d_model"] | None:
    """The common input when the head axis is a broadcast (stride 0), else None.

    A stride-0 head axis means every head holds the same values, so the per-head input can
    take the plain projection: untouched split inputs and hooks that return an expanded
    residual both stay on the fast path."""
    return x[:, :, 0] if x.stride(2) == 0 or x.shape[2] == 1 else None


def broadcast_heads(
    x: Float[Tensor, "batch pos d_model"], n_heads: int
) -> Float[Tensor, "batch pos heads d_model"]:
    """A per-head view of the residual: no copy until a hook edits it."""
    return x.unsqueeze(2).expand(-1, -1, n_heads, -1)


class Attention(nn.Module):
    """Attention with keys/values stored per head as W_K, W_V, b_K, b_V (classic layout)."""

    def __init__(self, cfg: ConfigOrDict, attn_type: str = "global", layer_id: int = 0):
        super().__init__()
        self.cfg = cfg = HookedTransformerConfig.unwrap(cfg)
        self.attn_type = attn_type
        self.layer_id = layer_id
        n_heads, d_model, d_head = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = head_input_parameter(n_heads, d_model, d_head, cfg.dtype)
        self.b_Q = nn.Parameter(torch.zeros(n_heads, d_head, dtype=cfg.dtype))
        self._register_key_value_parameters(cfg.n_key_value_heads or n_heads)
        self.W_O = head_output_parameter(n_heads, d_head, d_model, cfg.dtype)
        self.b_O = nn.Parameter(torch.zeros(d_model, dtype=cfg.dtype))
        self.scale = self._score_scale()
        if cfg.positional_embedding_type == "rotary":
            base = cfg.rotary_base
            if attn_type == "local" and cfg.rotary_base_local is not None:
                base = cfg.rotary_base_local
            self.rotary_sin: Tensor
            self.rotary_cos: Tensor
            sin, cos = rotary_tables(cfg, base)
            self.register_buffer("rotary_sin", sin)
            self.register_buffer("rotary_cos", cos)
            self.hook_rot_q = HookPoint()
            self.hook_rot_k = HookPoint()
        if cfg.use_qk_norm:
            self.q_norm = RMSNorm(cfg, d_head)
            self.k_norm = RMSNorm(cfg, d_head)
        self.hook_q = HookPoint()
        self.hook_k = HookPoint()
        self.hook_v = HookPoint()
        self.hook_attn_scores = HookPoint(pos_axis=2)
        self.hook_pattern = HookPoint(pos_axis=2)
        self.hook_z = HookPoint()
        self.hook_result = HookPoint()
        self._mask_cache: dict[tuple[int, int, str], Tensor] = {}
        # Classic's buffers. IGNORE is the masked score; the [n_ctx, n_ctx] mask is only
        # built when read (64 MB a layer at n_ctx 8192), and neither is in the state dict.
        self.IGNORE: Tensor
        self.register_buffer("IGNORE", torch.tensor(-torch.inf), persistent=False)
        self._classic_mask: Tensor | None
        self.register_buffer("_classic_mask", None, persistent=False)
        internal = [self.hook_q, self.hook_k, self.hook_v, self.hook_attn_scores, self.hook_pattern]
        internal += [self.hook_z, self.hook_result]
        if cfg.positional_embedding_type == "rotary":
            internal += [self.hook_rot_q, self.hook_rot_k]
        self._internal_hooks: tuple[HookPoint, ...] = tuple(internal)

    @property
    def mask(self) -> Bool[Tensor, "n_ctx n_ctx"]:
        """Classic's mask buffer: [n_ctx, n_ctx], True where query position i may attend to
        key position j (causal, banded for local layers, all True if bidirectional).

        Assigning a new bool matrix changes what the forward masks with: queries at the last
        query_pos of key_pos positions read its bottom-right [query_pos, key_pos] corner, as
        in classic. Padding masks still apply on top."""
        if self._classic_mask is None:
            n_ctx = self.cfg.n_ctx
            self._classic_mask = self._build_mask(n_ctx, n_ctx, self.IGNORE.device)[0, 0]
        return self._classic_mask

    @mask.setter
    def mask(self, value: object) -> None:
        if not isinstance(value, Tensor) or value.dtype != torch.bool or value.ndim != 2:
            described = (
                f"a {value.dtype} tensor of shape {tuple(value.shape)}"
                if isinstance(value, Tensor)
                else type(value).__name__
            )
            raise ValueError(
                f"attn.mask must be a 2-D bool tensor [query_pos, key_pos] (True = may attend); "
                f"got {described}"
            )
        self._classic_mask = value
        self._mask_cache.clear()

    # Names under which K/V are stored; GroupedQueryAttention uses the "_W_K" names.
    key_value_names = ("W_K", "b_K", "W_V", "b_V")

    def _register_key_value_parameters(self, kv_heads: int) -> None:
        cfg = self.cfg
        for weight_name, bias_name in (self.key_value_names[:2], self.key_value_names[2:]):
            weight = head_input_parameter(kv_heads, cfg.d_model, cfg.d_head, cfg.dtype)
            self.register_parameter(weight_name, weight)
            bias = nn.Parameter(torch.zeros(kv_heads, cfg.d_head, dtype=cfg.dtype))
            self.register_parameter(bias_name, bias)

    def stored_key_value(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(W_K, b_K, W_V, b_V) as stored: one entry per key/value head."""
        weight_k, bias_k, weight_v, bias_v = (self._parameters[n] for n in self.key_value_names)
        assert weight_k is not None and bias_k is not None
        assert weight_v is not None and bias_v is not None
        return weight_k, bias_k, weight_v, bias_v

    def _score_scale(self) -> float:
        divisor = self.cfg.attn_scale if self.cfg.use_attn_scale else 1.0
        if self.cfg.scale_attn_by_inverse_layer_idx:
            divisor *= self.layer_id + 1
        return 1.0 / divisor

    @property
    def OV(self) -> FactoredMatrix:
        """Per-head OV circuit [head_index, d_model, d_model] (keys/values expanded per query head)."""
        return FactoredMatrix(self.W_V_per_query_head, self.W_O)

    @property
    def QK(self) -> FactoredMatrix:
        """Per-head QK circuit [head_index, d_model, d_model]."""
        return FactoredMatrix(self.W_Q, self.W_K_per_query_head.transpose(-2, -1))

    @property
    def W_K_per_query_head(self) -> Float[Tensor, "head_index d_model d_head"]:
        """W_K with one entry per query head [head_index, d_model, d_head]; grouped key heads
        repeated (query head h reads key head h // group_size)."""
        return self._per_query_head(self.stored_key_value()[0])

    @property
    def W_V_per_query_head(self) -> Float[Tensor, "head_index d_model d_head"]:
        """W_V with one entry per query head [head_index, d_model, d_head]; grouped value
        heads repeated as for W_K_per_query_head."""
        return self._per_query_head(self.stored_key_value()[2])

    def _per_query_head(self, stored: Tensor) -> Tensor:
        group = self.cfg.n_heads // stored.shape[0]
        return stored if group == 1 else stored.repeat_interleave(group, dim=0)

    def forward(
        self,
        query_input: QueryInput,
        key_input: KeyInput,
        value_input: ValueInput,
        positions: Int[Tensor, "batch_or_1 pos"],
        key_padding_mask: Bool[Tensor, "batch key_pos"] | None = None,
        past_kv_cache_entry: HookedTransformerKeyValueCacheEntry | None = None,
    ) -> Float[Tensor, "batch pos d_model"]:
        """Attention output [batch, pos, d_model] (b_O included) from the normalised inputs.

        Each input is [batch, pos, d_model] shared by every head, or [batch, pos, heads,
        d_model] per head. positions ([batch or 1, pos]) drive rotary; key_padding_mask
        [batch, key_pos] is True for real keys, cached ones included; with
        past_kv_cache_entry the new keys and values are appended to it and queries attend to
        all of them. torch's fused kernel is used when cfg.use_fused_attention is set, scores
        are not soft-capped and no hook inside the attention is attached.
        """
        W_K, b_K, W_V, b_V = self.stored_key_value()
        q = self.hook_q(self._project(query_input, self.W_Q, self.b_Q))
        k = self.hook_k(self._expose_key_value_heads(self._project(key_input, W_K, b_K)))
        v = self.hook_v(self._expose_key_value_heads(self._project(value_input, W_V, b_V)))
        if self.cfg.use_qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.cfg.positional_embedding_type == "rotary":
            adjacent = self.cfg.rotary_adjacent_pairs
            q = self.hook_rot_q(
                apply_rotary(q, self.rotary_sin, self.rotary_cos, positions, adjacent)
            )
            k = self.hook_rot_k(
                apply_rotary(k, self.rotary_sin, self.rotary_cos, positions, adjacent)
            )
        if past_kv_cache_entry is not None:
            k, v = past_kv_cache_entry.append(k, v)
        if self._fused_path_allowed():
            return self._output(self._fused(q, k, v, key_padding_mask))
        scores = self.hook_attn_scores(self._masked_scores(q, k, key_padding_mask))
        pattern = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        if key_padding_mask is not None:
            # A query row with every key masked (a pad attending only to pads) is all NaN.
            pattern = torch.nan_to_num(pattern, nan=0.0)
        pattern = self.hook_pattern(pattern)
        z = self.hook_z(self._mix(pattern, v))
        return self._output(z)

    def _fused_path_allowed(self) -> bool:
        """The fused kernel computes neither scores nor pattern, so it runs only when nobody
        watches anything inside the attention, and when there is no soft cap to apply."""
        if not self.cfg.use_fused_attention or self.cfg.attn_scores_soft_cap > 0:
            return False
        return not any(hook.has_hooks() for hook in self._internal_hooks)

    def _fused(
        self,
        q: Float[Tensor, "batch query_pos head_index d_head"],
        k: Float[Tensor, "batch key_pos kv_head_index d_head"],
        v: Float[Tensor, "batch key_pos kv_head_index d_head"],
        key_padding_mask: Bool[Tensor, "batch key_pos"] | None,
    ) -> Float[Tensor, "batch query_pos head_index d_head"]:
        """torch's scaled_dot_product_attention; grouped keys/values are read in place
        (enable_gqa), never repeated."""
        query_pos, key_pos = q.shape[1], k.shape[1]
        causal = self.cfg.attention_dir == "causal"
        # Without padding or a window, a causal square needs only is_causal, and one query
        # (a decoding step) or bidirectional attention sees every key: no mask at all.
        unmasked = (
            key_padding_mask is None and self.attn_type != "local" and self._classic_mask is None
        )
        is_causal = unmasked and causal and query_pos == key_pos and query_pos > 1
        mask = None
        if not unmasked or (causal and query_pos not in (1, key_pos)):
            mask = self._allowed_keys(query_pos, key_pos, q.device)
            if key_padding_mask is not None:
                mask = mask & key_padding_mask[:, None, None, :]
        z = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            attn_mask=mask,
            is_causal=is_causal,
            scale=self.scale,
            enable_gqa=k.shape[2] != q.shape[2],
        )
        if key_padding_mask is not None:  # rows with every key masked: zeros, as in eager
            z = torch.nan_to_num(z, nan=0.0)
        return z.transpose(1, 2)

    def _project(
        self,
        x: Float[Tensor, "batch pos d_model"] | Float[Tensor, "batch pos input_heads d_model"],
        weight: Float[Tensor, "weight_heads d_model d_head"],
        bias: Float[Tensor, "weight_heads d_head"],
    ) -> Float[Tensor, "batch pos out_heads d_head"]:
        heads, _, d_head = weight.shape
        used_bias = unless_zero(bias)
        if x.ndim == 3:
            flat_bias = None if used_bias is None else used_bias.reshape(-1)
            projected = linear(x, linear_weight_from_heads(weight), flat_bias)
            return projected.unflatten(-1, (heads, d_head))
        batch, pos, input_heads, d_model = x.shape
        # Each weight head serves `repeat` consecutive input heads (ungrouped K/V inputs).
        repeat = input_heads // heads
        # [heads, batch * pos * repeat, d_model]
        per_head = x.reshape(batch, pos, heads, repeat, d_model).permute(2, 0, 1, 3, 4)
        projected = torch.matmul(per_head.reshape(heads, -1, d_model), weight)
        if used_bias is not None:
            projected = projected + used_bias[:, None, :]
        projected = projected.view(heads, batch, pos, repeat, d_head).permute(1, 2, 0, 3, 4)
        return projected.reshape(batch, pos, input_heads, d_head)

    def _expose_key_value_heads(
        self, x: Float[Tensor, "batch pos heads d_head"]
    ) -> Float[Tensor, "batch pos kv_head_index d_head"]:
        """Ungrouped mode shows keys/values per query head on the hooks."""
        if self.cfg.ungroup_grouped_query_attention and x.shape[2] < self.cfg.n_heads:
            return x.repeat_interleave(self.cfg.n_heads // x.shape[2], dim=2)
        return x

    def _masked_scores(
        self,
        q: Float[Tensor, "batch query_pos head_index d_head"],
        k: Float[Tensor, "batch key_pos kv_head_index d_head"],
        key_padding_mask: Bool[Tensor, "batch key_pos"] | None,
    ) -> Float[Tensor, "batch head_index query_pos key_pos"]:
        batch, query_pos, n_heads, d_head = q.shape
        key_pos, kv_heads = k.shape[1], k.shape[2]
        group = n_heads // kv_heads
        # [batch, kv_head_index, group * query_pos, d_head]: query head h = kv * group + g
        grouped_q = q.view(batch, query_pos, kv_heads, group, d_head).permute(0, 2, 3, 1, 4)
        grouped_q = grouped_q.reshape(batch, kv_heads, group * query_pos, d_head)
        scores = torch.matmul(grouped_q, k.permute(0, 2, 3, 1))
        scores = scores.view(batch, n_heads, query_pos, key_pos) * self.scale
        cap = self.cfg.attn_scores_soft_cap
        if cap > 0:
            scores = torch.tanh(scores / cap) * cap
        allowed = self._allowed_keys(query_pos, key_pos, scores.device)
        if key_padding_mask is not None:
            allowed = allowed & key_padding_mask[:, None, None, :]
        return scores.masked_fill(~allowed, float("-inf"))

    def _allowed_keys(
        self, query_pos: int, key_pos: int, device: torch.device
    ) -> Bool[Tensor, "1 1 query_pos key_pos"]:
        if self._classic_mask is not None:
            return self._corner_of_classic_mask(self._classic_mask, query_pos, key_pos, device)
        cache_key = (query_pos, key_pos, str(device))
        if cache_key not in self._mask_cache:
            if len(self._mask_cache) >= 8:  # generation makes a new shape every step
                self._mask_cache.clear()
            self._mask_cache[cache_key] = self._build_mask(query_pos, key_pos, device)
        return self._mask_cache[cache_key]

    def _corner_of_classic_mask(
        self, mask: Tensor, query_pos: int, key_pos: int, device: torch.device
    ) -> Bool[Tensor, "1 1 query_pos key_pos"]:
        if mask.shape[0] < query_pos or mask.shape[1] < key_pos:
            raise ValueError(
                f"attn.mask of layer {self.layer_id} has shape {tuple(mask.shape)}, too small "
                f"for {query_pos} queries over {key_pos} keys"
            )
        return mask[mask.shape[0] - query_pos :, mask.shape[1] - key_pos :].to(device)[None, None]

    def _build_mask(self, query_pos: int, key_pos: int, device: torch.device) -> Tensor:
        # Queries are the last `query_pos` of `key_pos` positions (earlier ones are cached).
        query_abs = torch.arange(key_pos - query_pos, key_pos, device=device)[:, None]
        key_abs = torch.arange(key_pos, device=device)[None, :]
        if self.cfg.attention_dir == "bidirectional":
            allowed = torch.ones(query_pos, key_pos, dtype=torch.bool, device=device)
        else:
            allowed = key_abs <= query_abs
        if self.attn_type == "local":
            assert self.cfg.window_size is not None
            allowed = allowed & (key_abs > query_abs - self.cfg.window_size)
        return allowed[None, None]

    def _mix(
        self,
        pattern: Float[Tensor, "batch head_index query_pos key_pos"],
        v: Float[Tensor, "batch key_pos kv_head_index d_head"],
    ) -> Float[Tensor, "batch query_pos head_index d_head"]:
        batch, n_heads, query_pos, key_pos = pattern.shape
        kv_heads, d_head = v.shape[2], v.shape[3]
        grouped = pattern.reshape(batch, kv_heads, (n_heads // kv_heads) * query_pos, key_pos)
        z = torch.matmul(grouped, v.permute(0, 2, 1, 3))
        return z.view(batch, n_heads, query_pos, d_head).transpose(1, 2)

    def _output(
        self, z: Float[Tensor, "batch pos head_index d_head"]
    ) -> Float[Tensor, "batch pos d_model"]:
        if self.cfg.use_attn_result:
            result = self.hook_result(torch.einsum("bphe,hed->bphd", z, self.W_O))
            return result.sum(dim=2) + self.b_O
        flat = z.reshape(z.shape[0], z.shape[1], -1)
        return linear(flat, linear_weight_to_model(self.W_O), unless_zero(self.b_O))
