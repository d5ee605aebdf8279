"""Key/value cache for incremental decoding.

Each layer's entry keeps the keys and values of the positions seen so far, with as many
heads as the model's hook_k/hook_v have (n_key_value_heads under grouped attention, or
n_heads when ungrouped), in the model's dtype. Keys are stored AFTER rotary, as Hugging
Face stores them: each position is rotated once, with its own position, when it is first
seen (classic TransformerLens stored them before rotary and re-rotated every step).
Storage grows by doubling, so appending a token copies nothing already cached.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor

from transformer_lens.HookedTransformerConfig import HookedTransformerConfig

KeysOrValues = Float[Tensor, "batch pos kv_head_index d_head"]
# What append returns: past and new positions together, so a different length axis.
AllKeysOrValues = Float[Tensor, "batch total_pos kv_head_index d_head"]


def key_value_heads_exposed(cfg: HookedTransformerConfig) -> int:
    """Heads on hook_k/hook_v/hook_k_input and in this cache: n_key_value_heads unless
    ungrouped, else n_heads. Attention asks this too; it lives here, below attention,
    because attention imports the cache."""
    if cfg.ungroup_grouped_query_attention or cfg.n_key_value_heads is None:
        return cfg.n_heads
    return cfg.n_key_value_heads


@dataclass
class HookedTransformerKeyValueCacheEntry:
    """The cached keys and values of one layer."""

    past_keys: KeysOrValues
    past_values: KeysOrValues
    frozen: bool = False
    _length: int = field(default=0, repr=False)

    @classmethod
    def init_cache_entry(
        cls,
        cfg: HookedTransformerConfig,
        device: torch.device | str | None,
        batch_size: int = 1,
    ) -> HookedTransformerKeyValueCacheEntry:
        """An empty entry [batch_size, 0, heads, d_head] in cfg.dtype on `device`; heads is
        n_key_value_heads on a grouped model unless it is ungrouped, else n_heads."""
        heads = key_value_heads_exposed(cfg)
        empty = torch.empty(batch_size, 0, heads, cfg.d_head, dtype=cfg.dtype, device=device)
        return cls(empty, empty.clone())

    @property
    def length(self) -> int:
        """Number of positions cached."""
        return self.past_keys.shape[1]

    def append(
        self, new_keys: KeysOrValues, new_values: KeysOrValues
    ) -> tuple[AllKeysOrValues, AllKeysOrValues]:
        """Keys and values of all positions so far (past + new); stored unless frozen."""
        self._check_compatible(new_keys, new_values)
        if self.frozen:
            return (
                torch.cat([self.past_keys, new_keys], dim=1),
                torch.cat([self.past_values, new_values], dim=1),
            )
        self._keys_buffer = _grow(getattr(self, "_keys_buffer", None), self.past_keys, new_keys)
        self._values_buffer = _grow(
            getattr(self, "_values_buffer", None), self.past_values, new_values
        )
        total = self.length + new_keys.shape[1]
        self._keys_buffer[:, self.length : total] = new_keys
        self._values_buffer[:, self.length : total] = new_values
        self.past_keys = self._keys_buffer[:, :total]
        self.past_values = self._values_buffer[:, :total]
        return self.past_keys, self.past_values

    def truncate(self, length: int) -> None:
        """Forget the positions from `length` on (their storage is reused by later appends)."""
        self.past_keys = self.past_keys[:, :length]
        self.past_values = self.past_values[:, :length]

    def _check_compatible(self, keys: Tensor, values: Tensor) -> None:
        expected = (self.past_keys.shape[0], self.past_keys.shape[2], self.past_keys.shape[3])
        for name, tensor in (("keys", keys), ("values", values)):
            got = (tensor.shape[0], tensor.shape[2], tensor.shape[3])
            if got != expected:
                raise ValueError(
                    f"New {name} [batch, pos, heads, d_head] = {tuple(tensor.shape)} do not fit a "
                    f"cache of [batch, _, heads, d_head] = {expected}; was the cache built for "
                    "another batch size, or before (un)grouping the attention?"
                )


def _grow(buffer: Tensor | None, current: Tensor, new: Tensor) -> Tensor:
    """A buffer with room for current + new positions, holding current's contents."""
    needed = current.shape[1] + new.shape[1]
    if buffer is not None and buffer.shape[1] >= needed and current.data_ptr() == buffer.data_ptr():
        return buffer
    capacity = max(needed, 2 * current.shape[1], 16)
    grown = torch.empty(
        current.shape[0], capacity, *current.shape[2:], dtype=new.dtype, device=new.device
    )
    grown[:, : current.shape[1]] = current
    return grown


@dataclass
class HookedTransformerKeyValueCache:
    """One entry per layer, plus the attention mask of every position seen so far."""

    entries: list[HookedTransformerKeyValueCacheEntry]
    previous_attention_mask: Int[Tensor, "batch pos_so_far"]
    frozen: bool = False

    @classmethod
    def init_cache(
        cls,
        cfg: HookedTransformerConfig,
        device: torch.device | str | None,
        batch_size: int = 1,
    ) -> HookedTransformerKeyValueCache:
        """An empty cache for a model with config `cfg` and a batch of `batch_size`. Build it
        after setting the attention flags: entries have the head count hook_k shows."""
        entries = [
            HookedTransformerKeyValueCacheEntry.init_cache_entry(cfg, device, batch_size)
            for _ in range(cfg.n_layers)
        ]
        mask = torch.empty(batch_size, 0, dtype=torch.long, device=device)
        return cls(entries, mask)

    def freeze(self) -> None:
        """Later forwards read the cache but do not extend it."""
        self.frozen = True
        for entry in self.entries:
            entry.frozen = True

    def unfreeze(self) -> None:
        """Let later forwards extend the cache again (undoes `freeze`)."""
        self.frozen = False
        for entry in self.entries:
            entry.frozen = False

    @property
    def length(self) -> int:
        """Number of positions seen so far (the length of the stored attention mask)."""
        return self.previous_attention_mask.shape[1]

    def append_attention_mask(
        self, attention_mask: Int[Tensor, "batch new_pos"]
    ) -> Int[Tensor, "batch total_pos"]:
        """The mask of past + new positions; stored unless frozen."""
        if attention_mask.shape[0] != self.previous_attention_mask.shape[0]:
            raise ValueError(
                f"attention_mask has batch {attention_mask.shape[0]} but the cache was built "
                f"for batch {self.previous_attention_mask.shape[0]}"
            )
        full = torch.cat([self.previous_attention_mask, attention_mask.long()], dim=1)
        if not self.frozen:
            self.previous_attention_mask = full
        return full

    def checkpoint(self) -> tuple[int, list[int]]:
        """Lengths to return to if a forward fails half way (see restore)."""
        return self.length, [entry.length for entry in self.entries]

    def restore(self, checkpoint: tuple[int, list[int]]) -> None:
        """Cut the mask and every entry back to the lengths saved by `checkpoint()`."""
        mask_length, entry_lengths = checkpoint
        self.previous_attention_mask = self.previous_attention_mask[:, :mask_length]
        for entry, length in zip(self.entries, entry_lengths, strict=True):
            entry.truncate(length)

    @contextlib.contextmanager
    def rolled_back_on_error(self) -> Iterator[None]:
        """A forward that fails inside this block leaves the cache as it was before it."""
        checkpoint = self.checkpoint()
        try:
            yield
        except BaseException:
            self.restore(checkpoint)
            raise

    def __getitem__(self, layer: int) -> HookedTransformerKeyValueCacheEntry:
        return self.entries[layer]

    def __len__(self) -> int:
        return len(self.entries)
