"""Residual-stream decompositions and logit attributions, mixed into `ActivationCache`.

Every decomposition here sums to the residual it decomposes (see `_cache_components` for
the layer, slicing and norm conventions).
"""

import torch
from jaxtyping import Float, Int
from torch import Tensor

from transformer_lens._cache_components import ComponentResultsMixin, LabelledStack, Stack
from transformer_lens.utils import Slice, SliceInput

Tokens = str | int | list[int] | Int[Tensor, "..."]


class CacheAnalysisMixin(ComponentResultsMixin):
    """ActivationCache's residual decompositions, norm application and logit attributions."""

    def accumulated_resid(
        self,
        layer: int | None = None,
        incl_mid: bool = False,
        apply_ln: bool = False,
        pos_slice: Slice | SliceInput = None,
        mlp_input: bool = False,
        return_labels: bool = False,
    ) -> LabelledStack:
        """The residual stream as it accumulates, one component per point up to `layer`.

        Components: resid_pre of every block up to and including `layer` ("{l}_pre"), with
        incl_mid the resid_mid of blocks below `layer` ("{l}_mid"), with mlp_input the MLP
        input of block `layer`, and at layer n_layers the final residual ("final_post").
        The last component is the residual at `layer` itself. apply_ln divides by the
        cached scale of the norm at `layer`; at n_layers (the logit lens) each component
        gets its own ln_final statistics instead. The norm weight is never applied.
        """
        layer = self._resolve_layer(layer)
        self._check_mlp_input(layer, mlp_input)
        if incl_mid and not self._has_resid_mid():
            raise ValueError("incl_mid needs hook_resid_mid, which this model's blocks lack")
        n_layers = self.model.cfg.n_layers
        components, labels = [], []
        for block in range(layer + 1):
            if block == n_layers:
                components.append(self._cached(f"blocks.{n_layers - 1}.hook_resid_post"))
                labels.append("final_post")
                continue
            components.append(self._cached(f"blocks.{block}.hook_resid_pre"))
            labels.append(f"{block}_pre")
            wants_mid = (incl_mid and block < layer) or (mlp_input and block == layer)
            if wants_mid and self._has_resid_mid():
                components.append(self._cached(f"blocks.{block}.hook_resid_mid"))
                labels.append(f"{block}_mid")
        pos = Slice(pos_slice)
        stack = torch.stack([pos.apply(component, dim=-2) for component in components])
        if apply_ln:
            stack = self.apply_ln_to_stack(
                stack, layer, mlp_input, pos_slice=pos, recompute_ln=layer == n_layers
            )
        return (stack, labels) if return_labels else stack

    def decompose_resid(
        self,
        layer: int | None = None,
        mlp_input: bool = False,
        mode: str = "all",
        apply_ln: bool = False,
        pos_slice: Slice | SliceInput = None,
        incl_embeds: bool = True,
        return_labels: bool = False,
    ) -> LabelledStack:
        """The residual at `layer` split into what each sublayer wrote.

        Components: "embed" and "pos_embed" (when it is added to the residual), then
        "{l}_attn_out" and "{l}_mlp_out" for blocks below `layer`, and with mlp_input the
        attention output of block `layer`. mode "attn" or "mlp" keeps only that kind of
        sublayer. With mode "all" and incl_embeds the components sum to the residual.
        """
        if mode not in ("all", "mlp", "attn"):
            raise ValueError(f"mode must be 'all', 'mlp' or 'attn'; got {mode!r}")
        layer = self._resolve_layer(layer)
        self._check_mlp_input(layer, mlp_input)
        cfg = self.model.cfg
        names, labels = [], []
        if incl_embeds:
            names.append("hook_embed")
            labels.append("embed")
            # Shortformer caches hook_pos_embed but never adds it to the residual.
            if cfg.positional_embedding_type == "standard":
                names.append("hook_pos_embed")
                labels.append("pos_embed")
        for block in range(layer + 1):
            writes_attn = block < layer or (mlp_input and self._has_resid_mid())
            if mode != "mlp" and writes_attn:
                names.append(f"blocks.{block}.hook_attn_out")
                labels.append(f"{block}_attn_out")
            if mode != "attn" and block < layer and not cfg.attn_only:
                names.append(f"blocks.{block}.hook_mlp_out")
                labels.append(f"{block}_mlp_out")
        pos = Slice(pos_slice)
        if names:
            stack = torch.stack([pos.apply(self._cached(name), dim=-2) for name in names])
        else:
            residual = pos.apply(self._residual_at(layer, mlp_input), dim=-2)
            stack = residual.new_zeros((0, *residual.shape))
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer, mlp_input, pos_slice=pos)
        return (stack, labels) if return_labels else stack

    def get_full_resid_decomposition(
        self,
        layer: int | None = None,
        mlp_input: bool = False,
        expand_neurons: bool = True,
        apply_ln: bool = False,
        pos_slice: Slice | SliceInput = None,
        return_labels: bool = False,
    ) -> LabelledStack:
        """The residual at `layer` split into heads, neurons, embeddings and biases.

        Components: every head below `layer` ("L{l}H{h}", with mlp_input also the heads
        of block `layer`), every neuron ("L{l}N{n}", or "{l}_mlp_out" per block without
        expand_neurons), "embed", "pos_embed" (when added to the residual), and "bias":
        `model.accumulated_bias(layer, mlp_input)`, without b_out when the MLPs come as
        whole hook_mlp_out (which holds it). The components sum to the residual. Models with post-norms (Gemma-2) have no such split and raise
        ValueError.
        """
        cfg = self.model.cfg
        if cfg.use_normalization_before_and_after:
            raise ValueError(
                "ln1_post/ln2_post normalise each sublayer's output, so it is not a sum of "
                "head and neuron results; decompose_resid still splits it by sublayer"
            )
        layer = self._resolve_layer(layer)
        self._check_mlp_input(layer, mlp_input)
        pos = Slice(pos_slice)
        head_layers = layer + 1 if mlp_input and self._has_resid_mid() else layer
        heads, labels = self._labelled(
            self.stack_head_results(head_layers, return_labels=True, pos_slice=pos)
        )
        parts = [heads]
        if not cfg.attn_only:
            if expand_neurons:
                neurons, neuron_labels = self._labelled(
                    self.stack_neuron_results(layer, pos, return_labels=True)
                )
            else:
                neurons, neuron_labels = self._labelled(
                    self.decompose_resid(
                        layer, mode="mlp", pos_slice=pos, incl_embeds=False, return_labels=True
                    )
                )
            parts.append(neurons)
            labels += neuron_labels
        embeds, embed_labels = self._labelled(
            self.decompose_resid(0, pos_slice=pos, return_labels=True)
        )
        # A whole hook_mlp_out already holds its b_out.
        bias = self.model.accumulated_bias(layer, mlp_input, expand_neurons).detach()
        bias = bias.to(device=embeds.device, dtype=embeds.dtype).expand_as(embeds[0])
        parts += [embeds, bias[None]]
        labels += [*embed_labels, "bias"]
        stack = torch.cat(parts)
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer, mlp_input, pos_slice=pos)
        return (stack, labels) if return_labels else stack

    @staticmethod
    def _labelled(result: LabelledStack) -> tuple[Stack, list[str]]:
        if not isinstance(result, tuple):
            raise TypeError("expected a (stack, labels) pair")
        return result

    def logit_attrs(
        self,
        residual_stack: Float[Tensor, "component *batch_and_pos d_model"],
        tokens: Tokens,
        incorrect_tokens: Tokens | None = None,
        pos_slice: Slice | SliceInput = None,
        batch_slice: Slice | SliceInput = None,
        has_batch_dim: bool = True,
    ) -> Float[Tensor, " component *batch_and_pos"]:
        """How much each component of a final-residual stack adds to the logit of `tokens`
        (minus the logit of `incorrect_tokens` when given).

        The stack is normalised with ln_final's cached scale (apply_ln_to_stack at the final
        layer), then dotted with W_U[:, token]. Tokens are one token (int, str, 0-d tensor)
        for every position, or a tensor shaped like the stack's axes between the component
        and d_model axes (e.g. [batch] after pos_slice=-1). Other shapes raise ValueError.
        b_U is left out: the attributions sum to a logit difference, or to a logit minus b_U.
        """
        directions = self.model.tokens_to_residual_directions(tokens).detach()
        if incorrect_tokens is not None:
            incorrect = self.model.tokens_to_residual_directions(incorrect_tokens).detach()
            if incorrect.shape != directions.shape:
                raise ValueError(
                    f"tokens and incorrect_tokens give directions of shapes "
                    f"{tuple(directions.shape)} and {tuple(incorrect.shape)}; they must match"
                )
            directions = directions - incorrect
        scaled = self.apply_ln_to_stack(
            residual_stack, None, False, pos_slice, batch_slice, has_batch_dim
        )
        if directions.shape not in (scaled.shape[1:], scaled.shape[-1:]):
            raise ValueError(
                f"Token directions of shape {tuple(directions.shape)} do not fit the stack of "
                f"shape {tuple(scaled.shape)}: give one token, or tokens shaped like "
                f"{tuple(scaled.shape[1:-1])}"
            )
        return (scaled * directions.to(device=scaled.device, dtype=scaled.dtype)).sum(-1)
