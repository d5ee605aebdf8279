"""ActivationFunctionFactory: a config's act_fn name -> the activation to call."""

from transformer_lens.HookedTransformerConfig import ConfigOrDict, HookedTransformerConfig
from transformer_lens.utilities.activation_functions import (
    SUPPORTED_ACTIVATIONS,
    XIELU,
    ActivationFunction,
)


class ActivationFunctionFactory:
    """Classic's namespace for `pick_activation_function`."""

    @staticmethod
    def pick_activation_function(cfg: ConfigOrDict) -> ActivationFunction:
        """The activation that cfg.act_fn names, from SUPPORTED_ACTIVATIONS.

        "xielu" gives a new `XIELU` module rather than the fixed function: its coefficients
        are trained, so a checkpoint's values must load into the MLP's parameters.
        Raises ValueError when act_fn is None or not a supported name.
        """
        act_fn = HookedTransformerConfig.unwrap(cfg).act_fn
        if act_fn is None:
            raise ValueError("cfg.act_fn is None, so there is no activation function to pick")
        if act_fn == "xielu":
            return XIELU()
        if act_fn not in SUPPORTED_ACTIVATIONS:
            raise ValueError(
                f"Invalid activation function name {act_fn!r}; expected one of "
                f"{sorted(SUPPORTED_ACTIVATIONS)}"
            )
        return SUPPORTED_ACTIVATIONS[act_fn]
