"""HookedTransformer: builds the modules from a config, runs the forward pass, and glues
hooks, caching and weight loading together. Model families live in `pretrained/`."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
import torch.nn as nn
from jaxtyping import Float, Int
from torch import Tensor

from transformer_lens import utils
from transformer_lens._devices import DevicesMixin
from transformer_lens._embedding_methods import EmbeddingMethodsMixin
from transformer_lens._hook_flags import HookFlagsMixin
from transformer_lens._model_inputs import ModelInputs, prepare_inputs
from transformer_lens._state_dict import check_and_complete_state_dict, is_derived_buffer
from transformer_lens._state_dict_steps import StateDictStepsMixin
from transformer_lens._text_methods import TextMethodsMixin
from transformer_lens._tokenizer_loading import load_tokenizer as _load_tokenizer
from transformer_lens._weight_properties import WeightPropertiesMixin
from transformer_lens.components.embed import Embed
from transformer_lens.components.norms import make_final_norm, make_norm
from transformer_lens.components.pos_embed import PosEmbed
from transformer_lens.components.transformer_block import TransformerBlock
from transformer_lens.components.unembed import Unembed
from transformer_lens.hook_points import HookedRootModule, HookPoint
from transformer_lens.HookedTransformerConfig import DTYPE_NAMES, HookedTransformerConfig
from transformer_lens.past_key_value_caching import HookedTransformerKeyValueCache

Logits = Float[Tensor, "batch pos d_vocab_out"]
# Classic's names for what `forward(return_type="loss")` returns.
SingleLoss = Float[Tensor, ""]
LossPerToken = Float[Tensor, "batch pos-1"]
Loss = SingleLoss | LossPerToken
# Classic's dtype names, for `from_pretrained(dtype=...)`.
DTYPE_FROM_STRING: dict[str, torch.dtype] = dict(DTYPE_NAMES)


class Output(NamedTuple):
    """What `forward(..., return_type="both")` returns: logits [batch, pos, d_vocab_out] and
    the loss (a scalar, or [batch, pos - 1] with loss_per_token)."""

    logits: Logits
    loss: Tensor


class HookedTransformer(
    TextMethodsMixin,
    HookFlagsMixin,
    WeightPropertiesMixin,
    StateDictStepsMixin,
    EmbeddingMethodsMixin,
    DevicesMixin,
    HookedRootModule,
):
    """A decoder-only transformer with a hook point on every activation."""

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
        if tokenizer is None and load_tokenizer:
            tokenizer = _load_tokenizer(self.cfg.tokenizer_name, local_only=False)
        if tokenizer is not None:
            self.set_tokenizer(tokenizer, default_padding_side=default_padding_side)
        if self.cfg.d_vocab == -1:
            raise ValueError("d_vocab must be set in the config when no tokenizer is given")
        self.default_padding_side = default_padding_side
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
        pos_embed = self.hook_pos_embed(
            self.pos_embed.embed_positions(inputs.positions.expand_as(tokens))
        )
        if self.cfg.positional_embedding_type == "shortformer":
            return embedded, pos_embed
        return embedded + pos_embed, None

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
        from transformer_lens.pretrained.processing import ProcessingFlags, load_and_process

        flags = ProcessingFlags(
            fold_ln=fold_ln,
            center_writing_weights=center_writing_weights,
            center_unembed=center_unembed,
            fold_value_biases=fold_value_biases,
            refactor_factored_attn_matrices=refactor_factored_attn_matrices,
        )
        load_and_process(self, state_dict, flags)

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
        from transformer_lens.pretrained.processing import ProcessingFlags, process_own_weights

        flags = ProcessingFlags(
            fold_ln=fold_ln,
            center_writing_weights=center_writing_weights,
            center_unembed=center_unembed,
            fold_value_biases=True,
            refactor_factored_attn_matrices=refactor_factored_attn_matrices,
        )
        process_own_weights(self, flags)

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

        return load_pretrained(
            cls,
            model_name,
            fold_ln=fold_ln,
            center_writing_weights=center_writing_weights,
            center_unembed=center_unembed,
            refactor_factored_attn_matrices=refactor_factored_attn_matrices,
            checkpoint_index=checkpoint_index,
            checkpoint_value=checkpoint_value,
            hf_model=hf_model,
            device=device,
            n_devices=n_devices,
            tokenizer=tokenizer,
            move_to_device=move_to_device,
            fold_value_biases=fold_value_biases,
            default_prepend_bos=default_prepend_bos,
            default_padding_side=default_padding_side,
            dtype=dtype,
            first_n_layers=first_n_layers,
            n_ctx=n_ctx,
            **from_pretrained_kwargs,
        )

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
            fold_ln=fold_ln,
            center_writing_weights=center_writing_weights,
            center_unembed=center_unembed,
            refactor_factored_attn_matrices=refactor_factored_attn_matrices,
            fold_value_biases=fold_value_biases,
            dtype=dtype,
            default_prepend_bos=default_prepend_bos,
            default_padding_side=default_padding_side,
            **from_pretrained_kwargs,
        )


def _tied_in(state_dict: Mapping[str, Any]) -> bool:
    """Whether a state dict keeps W_U equal to W_E^T (else a tied model must untie)."""
    W_E, W_U = state_dict.get("embed.W_E"), state_dict.get("unembed.W_U")
    return W_E is None or W_U is None or (W_E.shape == W_U.T.shape and torch.equal(W_E, W_U.T))
