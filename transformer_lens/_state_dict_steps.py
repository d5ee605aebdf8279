"""Classic HookedTransformer methods that run one weight-processing step on a state dict.

Each returns a new state dict and leaves the model (its weights, norms and cfg) as it is;
`load_and_process_state_dict` and `process_weights_` are the methods that change the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from torch import Tensor, nn

from transformer_lens import weight_processing

if TYPE_CHECKING:
    from transformer_lens.HookedTransformerConfig import HookedTransformerConfig

StateDict = dict[str, Tensor]


class StateDictStepsMixin:
    """`fold_layer_norm`, `center_writing_weights`, `center_unembed`, `fold_value_biases`,
    `refactor_factored_attn_matrices` and `fill_missing_keys` on a state dict in this model's
    key names, with this model's config."""

    cfg: HookedTransformerConfig

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

        return fill_missing_keys(cast(nn.Module, self), state_dict)
