"""HookedTransformer: builds the modules from a config, runs the forward pass, and glues
hooks, caching and weight loading together. Model families live in `pretrained/`."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Mapping
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
import torch.nn as nn
from jaxtyping import Float, Int
from torch import Tensor

from transformer_lens import (
    _devices,
    _embedding_methods,
    _hook_flags,
    _text_methods,
    _weight_properties,
    generation,
    utils,
    weight_processing,
)
from transformer_lens._embedding_methods import Residual
from transformer_lens._model_inputs import ModelInputs, prepare_inputs
from transformer_lens._state_dict import check_and_complete_state_dict, is_derived_buffer
from transformer_lens._text_methods import TextOrTokens
from transformer_lens._tokenizer_loading import load_tokenizer as _load_tokenizer
from transformer_lens._weight_properties import TokenOrTokens
from transformer_lens.components.embed import Embed
from transformer_lens.components.norms import make_final_norm, make_norm
from transformer_lens.components.pos_embed import PosEmbed
from transformer_lens.components.transformer_block import TransformerBlock
from transformer_lens.components.unembed import Unembed
from transformer_lens.FactoredMatrix import FactoredMatrix
from transformer_lens.hook_points import HookedRootModule, HookPoint
from transformer_lens.HookedTransformerConfig import DTYPE_NAMES, HookedTransformerConfig
from transformer_lens.past_key_value_caching import HookedTransformerKeyValueCache
from transformer_lens.weight_processing import ProcessingFlags

Logits = Float[Tensor, "batch pos d_vocab_out"]
# Classic's names for what `forward(return_type="loss")` returns.
SingleLoss = Float[Tensor, ""]
LossPerToken = Float[Tensor, "batch pos-1"]
Loss = SingleLoss | LossPerToken
# Classic's dtype names, for `from_pretrained(dtype=...)`.
DTYPE_FROM_STRING: dict[str, torch.dtype] = dict(DTYPE_NAMES)
StateDict = dict[str, Tensor]
# The type `to`, `cuda`, `cpu`, `mps` and `_apply` return: the model's own class.
Model = TypeVar("Model", bound="HookedTransformer")


class Output(NamedTuple):
    """What `forward(..., return_type="both")` returns: logits [batch, pos, d_vocab_out] and
    the loss (a scalar, or [batch, pos - 1] with loss_per_token)."""

    logits: Logits
    loss: Tensor


class HookedTransformer(HookedRootModule):
    """A decoder-only transformer with a hook point on every activation.

    Its methods beyond the forward pass keep classic TransformerLens's names, signatures and
    docstrings here and delegate to plain modules: `_text_methods` (tokenizer), `generation`,
    `_hook_flags`, `_embedding_methods`, `_weight_properties`, `weight_processing` (the
    state-dict steps) and `_devices`."""

    tokenizer: Any
    default_padding_side: str
    blocks: Any  # the TransformerBlocks, or modules a user swapped in: read by attribute

    def __init__(
        self,
        cfg: HookedTransformerConfig | dict[str, Any],
        tokenizer: Any = None,
        move_to_device: bool = True,
        default_padding_side: str = "right",
        *,
        load_tokenizer: bool = True,
    ):
        """Build the modules from cfg (a HookedTransformerConfig or a dict of its fields).

        The tokenizer is `tokenizer`, else (with load_tokenizer) the one cfg.tokenizer_name
        names, from the local Hugging Face cache or the hub; a warning if it cannot be loaded.
        move_to_device moves the model to cfg.device."""
        super().__init__()
        # The model owns its config: flags set here must never reach another model.
        self.cfg = HookedTransformerConfig.unwrap(cfg).copy()
        if self.cfg.positional_embedding_type == "alibi":
            raise NotImplementedError(
                "positional_embedding_type='alibi' is not supported yet; use 'standard', "
                "'shortformer' or 'rotary'"
            )
        self.tokenizer = None
        self.default_padding_side = default_padding_side
        if tokenizer is None and load_tokenizer:
            tokenizer = _load_tokenizer(self.cfg.tokenizer_name, local_only=False)
        if tokenizer is not None:
            self.set_tokenizer(tokenizer, default_padding_side=default_padding_side)
        if self.cfg.d_vocab == -1:
            raise ValueError("d_vocab must be set in the config when no tokenizer is given")
        self.embed = Embed(self.cfg)
        self.hook_embed = HookPoint()
        self.hook_tokens = HookPoint()
        if self.cfg.positional_embedding_type != "rotary":
            self.pos_embed = PosEmbed(self.cfg)
            self.hook_pos_embed = HookPoint()
        self.blocks = nn.ModuleList(TransformerBlock(self.cfg, i) for i in range(self.cfg.n_layers))
        self.ln_final = make_final_norm(self.cfg)
        self.unembed = Unembed(self.cfg)
        if self.cfg.init_weights:
            self.init_weights()
        if move_to_device and self.cfg.device is not None:
            # nn.Module.to: the device stays recorded in cfg as it was given.
            nn.Module.to(self, self.cfg.device)
        self.setup()

    # ----- forward ---------------------------------------------------------------------
    def forward(
        self,
        input: Any,
        return_type: str | None = "logits",
        loss_per_token: bool = False,
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
        start_at_layer: int | None = None,
        tokens: Int[Tensor, "batch pos"] | None = None,
        shortformer_pos_embed: Tensor | None = None,
        attention_mask: Tensor | None = None,
        stop_at_layer: int | None = None,
        past_kv_cache: HookedTransformerKeyValueCache | None = None,
    ) -> Any:
        """Run the model and return logits, a loss, both, or nothing.

        input: a string or list of strings, tokenized with prepend_bos and padding_side
        (defaults: cfg.default_prepend_bos and the model's default_padding_side; a padded batch
        gets its attention mask automatically); token ids [batch, pos] or [pos]; or, with
        start_at_layer, the residual stream [batch, pos, d_model] entering that block.

        return_type: "logits" gives [batch, pos, d_vocab_out]; "loss" the mean next-token
        cross-entropy, or [batch, pos - 1] with loss_per_token; "both" an `Output(logits,
        loss)`; None runs ln_final (so its hooks fire) and returns None.

        attention_mask: [batch, pos], 1 for real tokens and 0 for padding (int or bool). Padded
        keys are never attended to, positions count from each row's first real token, and
        predictions touching padding are left out of the loss. A mask passed here replaces the
        one computed for text input.

        past_kv_cache: a `HookedTransformerKeyValueCache` (see its `init_cache`). The input then
        holds only the new positions: they attend to the cached ones, their positions follow
        on, and their keys and values are appended unless the cache is frozen. attention_mask,
        if given, covers the new positions only. A forward that raises leaves the cache as it
        was.

        start_at_layer / stop_at_layer: run only blocks[start_at_layer:stop_at_layer] (slice
        semantics, so negative values count from n_layers). With stop_at_layer, the residual
        stream [batch, pos, d_model] after the last block run is returned, whatever
        return_type says. With start_at_layer, pass tokens= ([batch, pos]) to get a loss, and
        on a shortformer model shortformer_pos_embed= ([batch, pos, d_model], added to the
        query and key inputs only); both are ignored when starting from text or tokens.
        """
        if return_type not in ("logits", "loss", "both", None):
            raise ValueError(
                f"return_type must be 'logits', 'loss', 'both' or None, got {return_type!r}"
            )
        rollback = (
            contextlib.nullcontext()
            if past_kv_cache is None
            else past_kv_cache.rolled_back_on_error()
        )
        with rollback:
            residual, inputs = self._run_blocks(
                input, tokens, attention_mask, start_at_layer, stop_at_layer,
                prepend_bos, padding_side, past_kv_cache, shortformer_pos_embed,
            )  # fmt: skip
        if stop_at_layer is not None:
            return residual
        if return_type is None:
            self.ln_final(residual)  # its hooks fire as in a full forward
            return None
        logits = self.logits_from_residual(residual)
        if return_type == "logits":
            return logits
        if inputs.tokens is None:
            raise ValueError("A loss needs the tokens: pass tokens= when starting from a residual")
        loss = self.loss_fn(logits, inputs.tokens, inputs.attention_mask, per_token=loss_per_token)
        return loss if return_type == "loss" else Output(logits, loss)

    def logits_from_residual(
        self, residual: Float[Tensor, "batch pos d_model"]
    ) -> Float[Tensor, "batch pos d_vocab_out"]:
        """ln_final, the unembedding and the logit soft cap, on the final residual stream."""
        logits = self.unembed(self.ln_final(residual))
        if self.cfg.output_logits_soft_cap > 0:
            cap = self.cfg.output_logits_soft_cap
            logits = torch.tanh(logits / cap) * cap
        return logits

    def _run_blocks(
        self,
        input: Any,
        tokens: Int[Tensor, "batch pos"] | None,
        attention_mask: Tensor | None,
        start_at_layer: int | None,
        stop_at_layer: int | None,
        prepend_bos: bool | None,
        padding_side: str | None,
        past_kv_cache: HookedTransformerKeyValueCache | None,
        shortformer_pos_embed: Tensor | None,
    ) -> tuple[Float[Tensor, "batch pos d_model"], ModelInputs]:
        """Checked inputs, embedding and the blocks from start_at_layer to stop_at_layer."""
        inputs = prepare_inputs(
            self, input, tokens, attention_mask, start_at_layer, prepend_bos, padding_side,
            past_kv_cache,
        )  # fmt: skip
        if start_at_layer is None:
            residual, shortformer_pos_embed = self._embed(inputs)
        else:
            assert inputs.residual is not None
            residual = inputs.residual
        for layer in range(self.cfg.n_layers)[start_at_layer:stop_at_layer]:
            entry = past_kv_cache[layer] if past_kv_cache is not None else None
            residual = self.blocks[layer](
                residual, inputs.positions, inputs.key_padding_mask, entry, shortformer_pos_embed
            )
        return residual, inputs

    def _embed(
        self, inputs: ModelInputs
    ) -> tuple[Float[Tensor, "batch pos d_model"], Float[Tensor, "batch pos d_model"] | None]:
        """The residual stream's start, and the shortformer position embedding (None unless
        positions are shortformer's, which reach only queries and keys)."""
        assert inputs.tokens is not None
        tokens = self.hook_tokens(inputs.tokens) if self.cfg.use_hook_tokens else inputs.tokens
        embedded = self.hook_embed(self.embed(tokens))
        if self.cfg.positional_embedding_type not in ("standard", "shortformer"):
            return embedded, None
        pos_embed = self._position_embedding(inputs.positions.expand_as(tokens))
        if self.cfg.positional_embedding_type == "shortformer":
            return embedded, pos_embed
        return embedded + pos_embed, None

    def _position_embedding(
        self, positions: Int[Tensor, "batch pos"]
    ) -> Float[Tensor, "batch pos d_model"]:
        """hook_pos_embed of the learned position embedding (standard and shortformer only)."""
        return self.hook_pos_embed(self.pos_embed.embed_positions(positions))

    def loss_fn(
        self,
        logits: Logits,
        tokens: Int[Tensor, "batch pos"],
        attention_mask: Int[Tensor, "batch pos"] | None = None,
        per_token: bool = False,
    ) -> Tensor:
        """Next-token cross-entropy of logits [batch, pos, d_vocab_out] against tokens
        [batch, pos], in float32: the mean, or [batch, pos - 1] with per_token. With an
        attention_mask, a prediction counts only if the token it reads and the token it
        predicts are both real; per token, the others are 0."""
        return utils.lm_cross_entropy_loss(logits, tokens, attention_mask, per_token)

    # ----- text -------------------------------------------------------------------
    def set_tokenizer(self, tokenizer: Any, default_padding_side: str = "right") -> None:
        """Attach a Hugging Face tokenizer; missing eos becomes "<|endoftext|>", missing pad
        and bos become eos. BOS is added by to_tokens, whatever the tokenizer does. d_vocab
        is taken from the tokenizer when the config leaves it at -1."""
        _text_methods.set_tokenizer(self, tokenizer, default_padding_side)

    def tokenize_for_forward(
        self, text: str | list[str], prepend_bos: bool | None, padding_side: str | None
    ) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"] | None]:
        """Tokens for forward, with a mask only when padding is present."""
        return _text_methods.tokenize_for_forward(self, text, prepend_bos, padding_side)

    def to_tokens(
        self,
        input: str | list[str],
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
        move_to_device: bool = True,
        truncate: bool = True,
    ) -> Int[Tensor, "batch pos"]:
        """Token ids [batch, pos] of a text or list of texts. prepend_bos and padding_side
        default to cfg.default_prepend_bos and the model's default_padding_side; BOS is never
        doubled. truncate keeps the first n_ctx tokens of each text."""
        return _text_methods.to_tokens(
            self, input, prepend_bos, padding_side, move_to_device, truncate
        )

    def to_string(
        self, tokens: Int[Tensor, "*shape"] | np.ndarray | list[int] | list[list[int]] | int
    ) -> str | list[str]:
        """Decode token ids: a str for rank <= 1, a list of str for [batch, pos]."""
        return _text_methods.to_string(self, tokens)

    def to_str_tokens(
        self,
        input: str | list[str] | list[int] | Int[Tensor, "*shape"] | np.ndarray,
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
    ) -> list[str] | list[list[str]]:
        """Each token as a string. A text is tokenized first (prepend_bos as in to_tokens);
        a list of texts gives one list per text; token ids may be a [pos] or [1, pos] tensor
        or array, or a list of ints."""
        return _text_methods.to_str_tokens(self, input, prepend_bos, padding_side)

    def to_single_token(self, string: str) -> int:
        """The id of a string that is exactly one token; ValueError otherwise."""
        return _text_methods.to_single_token(self, string)

    def to_single_str_token(self, int_token: int | Int[Tensor, ""]) -> str:
        """The string of one token id."""
        return _text_methods.to_single_str_token(self, int_token)

    def get_token_position(
        self,
        single_token: str | int | Int[Tensor, ""],
        input: str | Int[Tensor, "batch pos"] | Int[Tensor, " pos"],
        mode: str = "first",
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
    ) -> int:
        """Position of the first (or last, mode="last") occurrence of a token in one text or
        sequence of ids; ValueError when it does not occur. A text is tokenized as in
        to_tokens, so with BOS prepended positions count it."""
        return _text_methods.get_token_position(
            self, single_token, input, mode, prepend_bos, padding_side
        )

    def generate(
        self,
        input: TextOrTokens | Float[Tensor, "batch pos d_model"] = "",
        max_new_tokens: int = 10,
        stop_at_eos: bool = True,
        eos_token_id: int | list[int] | None = None,
        do_sample: bool = True,
        top_k: int | None = None,
        top_p: float | None = None,
        temperature: float = 1.0,
        freq_penalty: float = 0.0,
        use_past_kv_cache: bool = True,
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
        return_type: str = "input",
        verbose: bool = True,
    ) -> str | list[str] | Int[Tensor, "batch prompt_and_new_pos"]:
        """Continue a text, a list of texts or token ids by up to max_new_tokens tokens.

        Greedy when do_sample is False, else sampled with temperature, top_k, top_p and
        freq_penalty. With stop_at_eos, a row stops at its first eos (eos_token_id, an id
        or a list of ids, defaults to the tokenizer's) and is then padded with eos; the loop
        ends when every row has stopped. A batch of texts is left-padded. return_type "str"
        decodes (a str for a single prompt), "tokens" gives [batch, pos] ids including the
        prompt, "input" returns the kind that came in. Hooks added with `model.hooks()` fire
        at every step. Runs under torch.inference_mode; see `transformer_lens.generation`."""
        return generation.generate(
            self, input, max_new_tokens, stop_at_eos, eos_token_id, do_sample, top_k, top_p,
            temperature, freq_penalty, use_past_kv_cache, prepend_bos, padding_side,
            return_type, verbose,
        )  # fmt: skip

    # ----- hook flags -------------------------------------------------------------
    def _hook_unavailable_reason(self, name: str) -> str | None:
        return _hook_flags.hook_unavailable_reason(self.cfg, name)

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
        _hook_flags.set_use_split_qkv_input(self.cfg, use_split_qkv_input)

    def set_use_hook_mlp_in(self, use_hook_mlp_in: bool) -> None:
        """Turn on or off `hook_mlp_in` [batch, pos, d_model], the residual the MLP reads
        (before ln2). Costs one copy of the residual per layer. Refused on attention-only
        models."""
        _hook_flags.set_use_hook_mlp_in(self.cfg, use_hook_mlp_in)

    def set_use_attn_in(self, use_attn_in: bool) -> None:
        """Turn on or off `hook_attn_in` [batch, pos, head_index, d_model]: one residual per
        query head, read by that head's Q, K and V, before ln1. Free until hooked; a hooked
        input is copied (n_heads times the residual) and projected head by head, keys and
        values included. Every query head needs keys and values of its own, so a grouped model
        must be ungrouped first (`set_ungroup_grouped_query_attention(True)`, with its memory
        cost); otherwise this raises. Refused while use_split_qkv_input is on."""
        _hook_flags.set_use_attn_in(self.cfg, use_attn_in)

    def set_ungroup_grouped_query_attention(self, ungroup_grouped_query_attention: bool) -> None:
        """On a grouped-query model, show keys and values per query head: hook_k, hook_v,
        hook_rot_k, hook_k_input, hook_v_input and the key/value cache get n_heads heads
        instead of n_key_value_heads, each key/value head repeated for the query heads that
        read it. This multiplies the memory of keys, values and the cache by the group size;
        outputs do not change. Needed for use_attn_in, so it cannot be turned off while that
        is on. No effect on models that are not grouped."""
        _hook_flags.set_ungroup_grouped_query_attention(self.cfg, ungroup_grouped_query_attention)

    # ----- entry points to the first residual stream ------------------------------
    def input_to_embed(
        self,
        input: Any,
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
        attention_mask: Tensor | None = None,
        past_kv_cache: HookedTransformerKeyValueCache | None = None,
    ) -> tuple[Residual, Int[Tensor, "batch pos"], Residual | None, Tensor | None]:
        """What the forward feeds block 0: (residual [batch, pos, d_model], tokens [batch,
        pos], the shortformer position embedding or None, the attention mask or None).

        input is text or token ids, as for forward; hook_tokens, hook_embed and
        hook_pos_embed fire. With past_kv_cache, the new positions follow the cached ones and
        the attention mask is appended to the cache, as a forward would."""
        return _embedding_methods.input_to_embed(
            self, input, prepend_bos, padding_side, attention_mask, past_kv_cache
        )

    def get_pos_offset(
        self, past_kv_cache: HookedTransformerKeyValueCache | None, batch_size: int
    ) -> int:
        """How many positions `past_kv_cache` already holds (0 without a cache), after
        checking that it fits a batch of `batch_size` for this model."""
        return _embedding_methods.get_pos_offset(self, past_kv_cache, batch_size)

    def get_residual(
        self,
        embed: Residual,
        pos_offset: int,
        prepend_bos: bool | None = None,
        attention_mask: Tensor | None = None,
        tokens: Int[Tensor, "batch pos"] | None = None,
        return_shortformer_pos_embed: bool = True,
        device: str | torch.device | None = None,
    ) -> Residual | tuple[Residual, Residual | None]:
        """The residual stream's start from the token embedding [batch, pos, d_model]: plus
        the position embedding of positions pos_offset... (standard), or with it returned
        apart (shortformer), or the embedding itself (rotary, alibi). attention_mask [batch,
        pos_offset + pos] makes positions count from each row's first real token.
        prepend_bos and tokens are accepted for classic's signature and not needed."""
        return _embedding_methods.get_residual(
            self, embed, pos_offset, attention_mask, return_shortformer_pos_embed, device
        )

    def move_model_modules_to_device(self) -> None:
        """Move every module to cfg.device (classic spread blocks over n_devices; this fork
        keeps the model on one device)."""
        nn.Module.to(self, self.cfg.device)

    # ----- weight views (stacked copies, for analysis) ----------------------------
    @property
    def W_E(self) -> Float[Tensor, "d_vocab d_model"]:
        """Token embedding [d_vocab, d_model] (the parameter itself, not a copy)."""
        return self.embed.W_E

    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab_out"]:
        """Unembedding [d_model, d_vocab_out] (the parameter itself, not a copy)."""
        return self.unembed.W_U

    @property
    def b_U(self) -> Float[Tensor, " d_vocab_out"]:
        """Unembedding bias [d_vocab_out] (the parameter itself)."""
        return self.unembed.b_U

    @property
    def W_pos(self) -> Float[Tensor, "n_ctx d_model"]:
        """Learned position embedding [n_ctx, d_model] (the parameter itself); AttributeError
        on models without one (rotary)."""
        if not hasattr(self, "pos_embed"):
            raise _weight_properties.no_position_table(self.cfg)
        return self.pos_embed.W_pos

    @property
    def W_E_pos(self) -> Float[Tensor, "d_vocab_plus_n_ctx d_model"]:
        """W_E and W_pos concatenated along the first axis: [d_vocab + n_ctx, d_model]."""
        return torch.cat([self.W_E, self.W_pos], dim=0)

    @property
    def W_Q(self) -> Float[Tensor, "layer head_index d_model d_head"]:
        """Query weights of every layer, [layer, head_index, d_model, d_head]."""
        return _weight_properties.stacked(self.blocks, "attn.W_Q")

    @property
    def W_K(self) -> Float[Tensor, "layer head_index d_model d_head"]:
        """Key weights of every layer, [layer, head_index, d_model, d_head]: one entry per
        query head, so on a grouped model each key/value head appears once per query head that
        reads it (stored as [kv_head_index, d_model, d_head] per layer)."""
        return _weight_properties.stacked(self.blocks, "attn.W_K")

    @property
    def W_V(self) -> Float[Tensor, "layer head_index d_model d_head"]:
        """Value weights of every layer, [layer, head_index, d_model, d_head]: per query head,
        key/value heads repeated on a grouped model as for W_K."""
        return _weight_properties.stacked(self.blocks, "attn.W_V")

    @property
    def W_O(self) -> Float[Tensor, "layer head_index d_head d_model"]:
        """Output weights of every layer, [layer, head_index, d_head, d_model]."""
        return _weight_properties.stacked(self.blocks, "attn.W_O")

    @property
    def b_Q(self) -> Float[Tensor, "layer head_index d_head"]:
        """Query biases of every layer, [layer, head_index, d_head]."""
        return _weight_properties.stacked(self.blocks, "attn.b_Q")

    @property
    def b_K(self) -> Float[Tensor, "layer head_index d_head"]:
        """Key biases of every layer, [layer, head_index, d_head]: per query head, repeated
        on a grouped model as for W_K."""
        return _weight_properties.stacked(self.blocks, "attn.b_K")

    @property
    def b_V(self) -> Float[Tensor, "layer head_index d_head"]:
        """Value biases of every layer, [layer, head_index, d_head]: per query head, repeated
        on a grouped model as for W_K."""
        return _weight_properties.stacked(self.blocks, "attn.b_V")

    @property
    def b_O(self) -> Float[Tensor, "layer d_model"]:
        """Attention output biases of every layer, [layer, d_model]."""
        return _weight_properties.stacked(self.blocks, "attn.b_O")

    @property
    def W_in(self) -> Float[Tensor, "layer d_model d_mlp"]:
        """MLP input weights of every layer, [layer, d_model, d_mlp] (the linear, ungated
        branch on gated MLPs)."""
        return _weight_properties.stacked(self.blocks, "mlp.W_in")

    @property
    def W_out(self) -> Float[Tensor, "layer d_mlp d_model"]:
        """MLP output weights of every layer, [layer, d_mlp, d_model]."""
        return _weight_properties.stacked(self.blocks, "mlp.W_out")

    @property
    def b_in(self) -> Float[Tensor, "layer d_mlp"]:
        """MLP input biases of every layer, [layer, d_mlp]."""
        return _weight_properties.stacked(self.blocks, "mlp.b_in")

    @property
    def b_out(self) -> Float[Tensor, "layer d_model"]:
        """MLP output biases of every layer, [layer, d_model]."""
        return _weight_properties.stacked(self.blocks, "mlp.b_out")

    @property
    def W_gate(self) -> Float[Tensor, "layer d_model d_mlp"] | None:
        """Gate weights of every layer, [layer, d_model, d_mlp], the branch the activation
        is applied to; None unless cfg.gated_mlp."""
        return _weight_properties.stacked(self.blocks, "mlp.W_gate") if self.cfg.gated_mlp else None

    @property
    def QK(self) -> FactoredMatrix:
        """[layer, head_index, d_model, d_model] query-key circuits."""
        return FactoredMatrix(self.W_Q, self.W_K.transpose(-2, -1))

    @property
    def OV(self) -> FactoredMatrix:
        """[layer, head_index, d_model, d_model] output-value circuits."""
        return FactoredMatrix(self.W_V, self.W_O)

    def all_head_labels(self) -> list[str]:
        """Labels "L{layer}H{head}" of every query head, layer by layer."""
        return _weight_properties.all_head_labels(self.cfg)

    def accumulated_bias(
        self, layer: int, mlp_input: bool = False, include_mlp_biases: bool = True
    ) -> Float[Tensor, " d_model"]:
        """The biases written to the residual stream before block `layer` (0..n_layers):
        b_O, and b_out unless include_mlp_biases is False, of every block below it. With
        mlp_input, also b_O of block `layer`, whose attention writes before its MLP reads
        (except in parallel blocks, where the MLP reads resid_pre)."""
        return _weight_properties.accumulated_bias(self, layer, mlp_input, include_mlp_biases)

    def all_composition_scores(self, mode: str) -> Float[Tensor, "layer1 head1 layer2 head2"]:
        """Composition scores of every head pair: how much head (l1, h1)'s OV output feeds
        the queries ("Q"), keys ("K") or values ("V") of head (l2, h2), as
        ||OV1 @ M2||_F / (||OV1||_F ||M2||_F). Zero unless l1 < l2. Grouped K/V weights are
        expanded per query head, so every query head gets its own row and column."""
        return _weight_properties.all_composition_scores(self, mode)

    def tokens_to_residual_directions(self, tokens: TokenOrTokens) -> Float[Tensor, "... d_model"]:
        """The unembedding direction W_U[:, token] of each token: [d_model] for one token
        (an int, a str, a 0-d tensor), [..., d_model] for a tensor or list of tokens. A str
        must be a single token of the attached tokenizer."""
        return _weight_properties.tokens_to_residual_directions(self, tokens)

    # ----- one processing step on a state dict (the model is left as it is) -------
    def fold_layer_norm(
        self, state_dict: StateDict, fold_biases: bool = True, center_weights: bool = True
    ) -> StateDict:
        """Fold ln1, ln2 and ln_final (and SoLU's mlp.ln) into the weights that read them; the
        norm keys are dropped, so load the result into a model with LNPre/RMSPre norms."""
        return weight_processing.fold_layer_norm(state_dict, self.cfg, fold_biases, center_weights)

    def center_writing_weights(self, state_dict: StateDict) -> StateDict:
        """Remove the d_model mean of every weight that writes to the residual stream
        (LayerNorm models only; warns and changes nothing otherwise)."""
        return weight_processing.center_writing_weights(state_dict, self.cfg)

    def center_unembed(self, state_dict: StateDict) -> StateDict:
        """Remove the vocabulary mean of W_U and b_U (log-probs unchanged; skipped with a
        warning under a logit soft cap)."""
        return weight_processing.center_unembed(state_dict, self.cfg)

    def fold_value_biases(self, state_dict: StateDict) -> StateDict:
        """Move each layer's value bias into b_O and zero it."""
        return weight_processing.fold_value_biases(state_dict, self.cfg)

    def refactor_factored_attn_matrices(self, state_dict: StateDict) -> StateDict:
        """Put each head's QK and OV circuits in balanced SVD form (non-rotary models)."""
        return weight_processing.refactor_factored_attn_matrices(state_dict, self.cfg)

    def fill_missing_keys(self, state_dict: StateDict) -> StateDict:
        """The state dict with every key this model has and it lacks filled from the model's
        current weights (a warning for weights other than biases)."""
        from transformer_lens.loading_from_pretrained import fill_missing_keys

        return fill_missing_keys(self, state_dict)

    # ----- devices and dtypes -----------------------------------------------------
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
        return super().to(
            *_devices.record_move(self.cfg, device_or_dtype, args, kwargs, print_details), **kwargs
        )

    def _apply(self: Model, fn: Any, recurse: bool = True) -> Model:
        """Every conversion (`to`, `half`, `cuda`, ...) keeps tied embeddings tied (torch
        converts each parameter on its own, which would untie them) and puts an untied W_U
        that changed dtype or device in the fastest layout for them."""
        _devices.apply_keeping_ties(self, functools.partial(super()._apply, fn, recurse))
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
        return _devices.n_params(self)

    def _tieable_unembed(self) -> Unembed | None:
        """The Unembed whose W_U may share W_E's storage: `self.unembed`, or the Unembed a
        replacement module wraps (circuit-tracer wraps it); None if there is none."""
        return _devices.tieable_unembed(self)

    # ----- weights ---------------------------------------------------------------------
    def init_weights(self) -> None:
        """gpt2 init: W_* ~ N(0, initializer_range), biases 0, norm weights 1."""
        if self.cfg.init_mode != "gpt2":
            raise NotImplementedError(
                f"init_mode {self.cfg.init_mode!r} is not supported yet; use 'gpt2'"
            )
        generator_std = self.cfg.initializer_range
        with torch.no_grad():
            for name, param in self.named_parameters():
                leaf = name.rsplit(".", 1)[-1]
                if leaf.lstrip("_").startswith("W_"):
                    nn.init.normal_(param, std=generator_std)
                elif leaf.lstrip("_").startswith("b"):
                    param.zero_()
                elif leaf == "w":
                    param.fill_(1.0)

    def load_state_dict(  # type: ignore[override]
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Load weights, refusing missing, unexpected or wrongly shaped keys by name.

        Derived buffers (rotary tables) are filled in when absent; classic `attn.mask` and
        `attn.IGNORE` buffers are accepted and ignored (masks are built on the fly)."""
        completed = check_and_complete_state_dict(self, state_dict, strict)
        unembed = self._tieable_unembed()
        if unembed is not None and unembed.is_tied_to(self.embed) and not _tied_in(completed):
            unembed.untie()
        result = super().load_state_dict(completed, strict=False, assign=assign)
        # The model keeps its own rotary tables: they are never reported missing, as in
        # classic, where a state dict carried them.
        missing = [key for key in result.missing_keys if not is_derived_buffer(key)]
        return type(result)(missing, result.unexpected_keys)

    def load_and_process_state_dict(
        self,
        state_dict: dict[str, Tensor],
        fold_ln: bool = True,
        center_writing_weights: bool = True,
        center_unembed: bool = True,
        fold_value_biases: bool = True,
        refactor_factored_attn_matrices: bool = False,
    ) -> None:
        """Process a state dict with the given steps (see `from_pretrained`), in float32,
        then load it with the checks of `load_state_dict`. With fold_ln the norms become
        LNPre/RMSPre; if loading is refused, the model is left as it was."""
        from transformer_lens.pretrained.processing import load_and_process

        load_and_process(self, state_dict, ProcessingFlags.from_arguments(locals()))

    def process_weights_(
        self,
        fold_ln: bool = True,
        center_writing_weights: bool = True,
        center_unembed: bool = True,
        refactor_factored_attn_matrices: bool = False,
    ) -> None:
        """Process the model's own weights in place with the given steps (see
        `from_pretrained`); value biases are always folded. A model on the CPU is processed
        a piece at a time (a layer, a block of the vocabulary), with little memory beyond
        its own; others through one processed copy of the state dict."""
        from transformer_lens.pretrained.processing import process_own_weights

        process_own_weights(self, ProcessingFlags.from_arguments(locals()))

    # ----- the model's side of loading (pretrained.streaming.target.LoadTarget) ----------
    def _use_folded_norms(self) -> None:
        """fold_ln moved the norms' weights into the next matrices: LN -> LNPre, RMS -> RMSPre."""
        from transformer_lens.pretrained.processing_steps import FOLDED_NORMS

        assert self.cfg.normalization_type is not None
        self.cfg.normalization_type = FOLDED_NORMS[self.cfg.normalization_type]
        self._rebuild_norms()

    def _tie_unembedding(self) -> None:
        """W_U becomes a transposed view of W_E's storage."""
        self.unembed.tie_to(self.embed)

    def _may_take_layout(self, key: str, tensor: Tensor) -> bool:
        """Only W_U reads another layout than its own without a copy (HF's, transposed)."""
        return key == "unembed.W_U" and Unembed.accepts_layout(tensor)

    def _rebuild_norms(self) -> None:
        """Swap norm modules after cfg.normalization_type changed (fold_ln), keeping devices."""
        device, dtype = self.cfg.device, self.cfg.dtype
        for block in self.blocks:
            block.ln1 = make_norm(self.cfg).to(device=device, dtype=dtype)
            if hasattr(block, "ln2"):
                block.ln2 = make_norm(self.cfg).to(device=device, dtype=dtype)
            if self.cfg.act_fn == "solu_ln" and self.cfg.normalization_type == "LNPre":
                # SoLU's LayerNorm was folded into W_out too
                norm = make_norm(self.cfg, length=self.cfg.d_mlp)
                block.mlp.ln = norm.to(device=device, dtype=dtype)
        self.ln_final = make_final_norm(self.cfg).to(device=device, dtype=dtype)
        self.setup()

    # ----- loading -----------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        model_name: str,
        fold_ln: bool = True,
        center_writing_weights: bool = True,
        center_unembed: bool = True,
        refactor_factored_attn_matrices: bool = False,
        checkpoint_index: int | None = None,
        checkpoint_value: int | None = None,
        hf_model: Any = None,
        device: str | torch.device | None = None,
        n_devices: int = 1,
        tokenizer: Any = None,
        move_to_device: bool = True,
        fold_value_biases: bool = True,
        default_prepend_bos: bool | None = None,
        default_padding_side: str = "right",
        dtype: str | torch.dtype = "float32",
        first_n_layers: int | None = None,
        n_ctx: int | None = None,
        **from_pretrained_kwargs: Any,
    ) -> HookedTransformer:
        """Load a pretrained decoder-only model, processing its weights as they stream in.

        model_name is one of:
        - an official name or alias (case-insensitive; `loading.OFFICIAL_MODEL_NAMES`): the
          checkpoint comes from the Hugging Face cache, or is downloaded when absent
          (`revision`, `cache_dir`, `token` go to the hub);
        - a local directory with a Hugging Face checkpoint (config.json, *.safetensors, and
          ideally tokenizer files);
        - any name together with hf_model=, an already loaded Hugging Face model whose
          weights are read (a warning if model_name is official and the configs differ).
        With a directory or hf_model no network call is made: the tokenizer comes from the
        directory, or from the local cache under the model's name; when none is found the model
        works on token ids and says so in a warning. tokenizer= supplies one instead.

        Processing, each step leaving the predicted log-probs unchanged up to rounding (hook
        values and raw logits can change): fold_ln (folds the norm weights into the weights
        that read them, so LN/RMS become LNPre/RMSPre), center_writing_weights (removes the
        d_model mean of what is written to the residual; LayerNorm models only, skipped with a
        warning otherwise), center_unembed (removes the vocabulary mean of W_U and b_U; skipped
        with a soft cap), fold_value_biases (b_V into b_O) are on by default;
        refactor_factored_attn_matrices (QK and OV in balanced SVD form) is off.
        `from_pretrained_no_processing` turns all of them off.

        dtype (or torch_dtype): the model's dtype, a torch.dtype or its name (default
        float32); checkpoint tensors are rounded to it, processed in float32, then stored in
        it. device: where the model is moved once loaded (move_to_device=False skips the
        move). first_n_layers: keep only the first n blocks. n_ctx: a shorter
        (or, with a warning, longer) context. progress_bar: a tqdm bar over the weight pieces.
        default_prepend_bos / default_padding_side: the defaults for text input. Quantised
        loading and training checkpoints are refused; unknown keyword arguments raise
        TypeError.
        """
        from transformer_lens.pretrained.loader import load_pretrained
        from transformer_lens.pretrained.request import LoadRequest

        return load_pretrained(cls, LoadRequest.from_arguments(locals()))

    @classmethod
    def from_pretrained_no_processing(
        cls,
        model_name: str,
        fold_ln: bool = False,
        center_writing_weights: bool = False,
        center_unembed: bool = False,
        refactor_factored_attn_matrices: bool = False,
        fold_value_biases: bool = False,
        dtype: str | torch.dtype = torch.float32,
        default_prepend_bos: bool | None = None,
        default_padding_side: str = "right",
        **from_pretrained_kwargs: Any,
    ) -> HookedTransformer:
        """`from_pretrained` with every weight-processing step off by default, so the weights
        are the checkpoint's, cast to dtype; a flag passed here turns its step back on."""
        return cls.from_pretrained(
            model_name,
            **ProcessingFlags.from_arguments(locals()).as_keywords(),
            dtype=dtype,
            default_prepend_bos=default_prepend_bos,
            default_padding_side=default_padding_side,
            **from_pretrained_kwargs,
        )


def _tied_in(state_dict: Mapping[str, Any]) -> bool:
    """Whether a state dict keeps W_U equal to W_E^T (else a tied model must untie)."""
    W_E, W_U = state_dict.get("embed.W_E"), state_dict.get("unembed.W_U")
    return W_E is None or W_U is None or (W_E.shape == W_U.T.shape and torch.equal(W_E, W_U.T))
