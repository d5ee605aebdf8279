"""HookedTransformerConfig: the fields of a decoder-only model, validated and derived once.

This module knows nothing of Hugging Face: family adapters translate HF configs into it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import pprint
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from transformer_lens._errors import ClassicAssertionError

SUPPORTED_ACTIVATIONS = (
    "solu",
    "solu_ln",
    "gelu_new",
    "gelu_fast",
    "silu",
    "relu",
    "gelu",
    "gelu_pytorch_tanh",
    "xielu",
)
NORMALIZATION_TYPES = ("LN", "LNPre", "RMS", "RMSPre", None)
POSITIONAL_EMBEDDING_TYPES = ("standard", "rotary", "shortformer", "alibi")
ATTENTION_TYPES = ("global", "local")
ATTENTION_DIRECTIONS = ("causal", "bidirectional")
DTYPE_NAMES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """Turn a dtype or one of the classic dtype strings into a torch.dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    name = dtype.removeprefix("torch.")
    if name not in DTYPE_NAMES:
        raise ValueError(f"Unknown dtype {dtype!r}; expected one of {sorted(DTYPE_NAMES)}")
    return DTYPE_NAMES[name]


@dataclass
class HookedTransformerConfig:
    """Configuration of a HookedTransformer. Field names and defaults follow classic TransformerLens."""

    n_layers: int
    d_model: int
    n_ctx: int
    d_head: int
    model_name: str = "custom"
    n_heads: int = -1
    d_mlp: int | None = None
    act_fn: str | None = None
    d_vocab: int = -1
    eps: float = 1e-5
    use_attn_result: bool = False
    use_attn_scale: bool = True
    attn_scale: float = -1.0
    use_split_qkv_input: bool = False
    use_hook_mlp_in: bool = False
    use_attn_in: bool = False
    use_qk_norm: bool = False
    use_local_attn: bool = False
    ungroup_grouped_query_attention: bool = False
    original_architecture: str | None = None
    from_checkpoint: bool = False
    checkpoint_index: int | None = None
    checkpoint_label_type: str | None = None
    checkpoint_value: int | None = None
    tokenizer_name: str | None = None
    window_size: int | None = None
    attn_types: list[str] | None = None
    init_mode: str = "gpt2"
    normalization_type: str | None = "LN"
    device: str | torch.device | None = None
    n_devices: int = 1
    attention_dir: str = "causal"
    attn_only: bool = False
    seed: int | None = None
    initializer_range: float = -1.0
    init_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    positional_embedding_type: str = "standard"
    final_rms: bool = False
    d_vocab_out: int = -1
    parallel_attn_mlp: bool = False
    rotary_dim: int | None = None
    n_params: int | None = None
    use_hook_tokens: bool = False
    gated_mlp: bool = False
    default_prepend_bos: bool = True
    dtype: torch.dtype = torch.float32
    tokenizer_prepends_bos: bool | None = None
    n_key_value_heads: int | None = None
    post_embedding_ln: bool = False
    rotary_base: float = 10000.0
    rotary_base_local: float | None = None
    trust_remote_code: bool = False
    rotary_adjacent_pairs: bool = False
    load_in_4bit: bool = False
    num_experts: int | None = None
    experts_per_token: int | None = None
    relative_attention_max_distance: int | None = None
    relative_attention_num_buckets: int | None = None
    decoder_start_token_id: int | None = None
    tie_word_embeddings: bool = False
    use_normalization_before_and_after: bool = False
    attn_scores_soft_cap: float = -1.0
    output_logits_soft_cap: float = -1.0
    use_NTK_by_parts_rope: bool = False
    NTK_by_parts_low_freq_factor: float = 1.0
    NTK_by_parts_high_freq_factor: float = 4.0
    NTK_by_parts_factor: float = 8.0
    NTK_original_ctx_len: int = 8192
    # Llama-style RMSNorm: cast the normalised activations to the model dtype, then multiply
    # by the weight in that dtype (HF LlamaRMSNorm). False: multiply in float32, then cast
    # (HF GemmaRMSNorm). Identical in float32; they differ in the last bit in bf16/fp16.
    rms_norm_cast_before_weight: bool = False
    # Opt-in: run attention through torch's fused scaled_dot_product_attention whenever no
    # hook inside the attention (q, k, v, rot_q, rot_k, attn_scores, pattern, z, result) is
    # active. Off by default, so that forward, run_with_cache and run_with_hooks give the same
    # bits (the eager path mirrors HF eager attention op for op; fused differs by ~1e-6).
    use_fused_attention: bool = False
    # HF rope_type "linear": inverse frequencies divided by this factor.
    rotary_linear_scaling_factor: float | None = None
    extra_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dtype = resolve_dtype(self.dtype)
        self._derive_sizes()
        self._validate()
        if self.seed is not None:
            self.set_seed_everywhere(self.seed)
        if self.initializer_range < 0:
            self.initializer_range = (
                0.8 / math.sqrt(self.d_model) if self.init_mode == "gpt2" else 1.0
            )
        if self.use_attn_scale and self.attn_scale == -1.0:
            self.attn_scale = math.sqrt(self.d_head)
        if self.device is None:
            from transformer_lens.utils import get_device

            self.device = get_device()
        self.n_params = self._count_params()

    def _derive_sizes(self) -> None:
        if self.n_heads == -1:
            if self.d_model % self.d_head != 0:
                logging.warning(
                    "d_model %d is not divisible by d_head %d; n_heads = %d",
                    self.d_model,
                    self.d_head,
                    self.d_model // self.d_head,
                )
            self.n_heads = self.d_model // self.d_head
        if self.d_mlp is None and not self.attn_only:
            self.d_mlp = 4 * self.d_model
        if self.d_vocab_out == -1:
            self.d_vocab_out = self.d_vocab
        if self.positional_embedding_type == "rotary" and self.rotary_dim is None:
            self.rotary_dim = self.d_head

    def _validate(self) -> None:
        _require(self.n_layers >= 0, f"n_layers must be >= 0, got {self.n_layers}")
        for name in ("d_model", "d_head", "n_ctx", "n_heads"):
            value = getattr(self, name)
            _require(value > 0, f"{name} must be positive, got {value}")
        if self.n_key_value_heads is not None:
            _require(
                self.n_key_value_heads > 0 and self.n_heads % self.n_key_value_heads == 0,
                f"n_heads ({self.n_heads}) must be divisible by n_key_value_heads "
                f"({self.n_key_value_heads})",
            )
        _require_choice("normalization_type", self.normalization_type, NORMALIZATION_TYPES)
        _require_choice(
            "positional_embedding_type", self.positional_embedding_type, POSITIONAL_EMBEDDING_TYPES
        )
        _require_choice("attention_dir", self.attention_dir, ATTENTION_DIRECTIONS)
        if not self.attn_only:
            _require_choice("act_fn", self.act_fn, SUPPORTED_ACTIVATIONS)
        if self.rotary_dim is not None and self.positional_embedding_type == "rotary":
            _require(
                0 < self.rotary_dim <= self.d_head and self.rotary_dim % 2 == 0,
                f"rotary_dim must be even and in (0, d_head={self.d_head}], got {self.rotary_dim}",
            )
        if self.use_local_attn:
            _require(
                self.window_size is not None and self.attn_types is not None,
                "use_local_attn needs both window_size and attn_types",
            )
        if self.attn_types is not None:
            _require(
                len(self.attn_types) == self.n_layers,
                f"attn_types has {len(self.attn_types)} entries but n_layers is {self.n_layers}",
            )
            for attn_type in self.attn_types:
                _require_choice("attn_types entry", attn_type, ATTENTION_TYPES)
        _require(
            (self.num_experts is None) == (self.experts_per_token is None),
            "num_experts and experts_per_token must be set together",
        )
        _require(
            isinstance(self.default_prepend_bos, bool),
            f"default_prepend_bos must be a bool, got {self.default_prepend_bos!r}",
        )
        if self.n_devices > 1:
            _require(
                torch.cuda.device_count() >= self.n_devices,
                f"n_devices={self.n_devices} but only {torch.cuda.device_count()} CUDA devices",
            )

    def _count_params(self) -> int:
        kv_heads = self.n_key_value_heads or self.n_heads
        attn = self.d_model * self.d_head * (2 * self.n_heads + 2 * kv_heads)
        total = self.n_layers * attn
        if not self.attn_only:
            assert self.d_mlp is not None
            mlp = self.d_model * self.d_mlp * (2 + self.gated_mlp)
            if self.num_experts:
                mlp = (mlp + self.d_model) * self.num_experts
            total += self.n_layers * mlp
        return total

    @property
    def group_size(self) -> int:
        """How many query heads share one key/value head (1 for multi-head attention)."""
        return self.n_heads // (self.n_key_value_heads or self.n_heads)

    @property
    def is_grouped(self) -> bool:
        """True when keys/values have fewer heads than queries."""
        return self.n_key_value_heads is not None and self.n_key_value_heads < self.n_heads

    @classmethod
    def unwrap(cls, config: dict[str, Any] | HookedTransformerConfig) -> HookedTransformerConfig:
        """Accept a dict or a config; always return a config."""
        return cls.from_dict(config) if isinstance(config, dict) else config

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any]) -> HookedTransformerConfig:
        """A config from a dict of field values; unknown field names raise ValueError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config_dict) - known)
        if unknown:
            raise ValueError(f"Unknown HookedTransformerConfig fields: {unknown}")
        return cls(**config_dict)

    def to_dict(self) -> dict[str, Any]:
        """A shallow copy of the fields (classic returned the live __dict__)."""
        return dict(self.__dict__)

    def copy(self) -> HookedTransformerConfig:
        """An independent copy: models own theirs, so flags set on one never reach another."""
        return dataclasses.replace(
            self,
            attn_types=list(self.attn_types) if self.attn_types is not None else None,
            extra_fields=dict(self.extra_fields),
            seed=None,
        )._with_seed(self.seed)

    def _with_seed(self, seed: int | None) -> HookedTransformerConfig:
        self.seed = seed
        return self

    def is_layer_norm_activation(self) -> bool:
        """Whether act_fn ends in "_ln" (SoLU followed by a LayerNorm, "solu_ln")."""
        return self.act_fn is not None and self.act_fn.endswith("_ln")

    def set_seed_everywhere(self, seed: int) -> None:
        """Seed torch, Python's `random` and NumPy's global generators with `seed`."""
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)

    def __repr__(self) -> str:
        return "HookedTransformerConfig:\n" + pprint.pformat(self.to_dict())


ConfigOrDict = HookedTransformerConfig | dict[str, Any]
"""What component constructors accept, as classic ones do; they convert it with `unwrap`."""


# Classic validated with `assert`; ClassicAssertionError is both a ValueError and an
# AssertionError, so code written against either version catches it.
def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ClassicAssertionError(message)


def _require_choice(name: str, value: object, choices: tuple[object, ...]) -> None:
    if value not in choices:
        raise ClassicAssertionError(f"Unknown {name} {value!r}; expected one of {list(choices)}")
