"""The LIT specs of HookedTransformerLIT: which fields it reads and writes, as lit_nlp types.
These are the parts of the wrapper that need lit-nlp."""

from types import ModuleType
from typing import Any

from transformer_lens.lit._config import HookedTransformerLITConfig
from transformer_lens.lit._lit_api import lit_module
from transformer_lens.lit.constants import DEFAULTS, INPUT_FIELDS, OUTPUT_FIELDS

Spec = dict[str, Any]


def _types(purpose: str) -> ModuleType:
    return lit_module("api.types", purpose)


def init_spec() -> Spec:
    """What the LIT UI asks for to load a new model."""
    types = _types("HookedTransformerLIT.init_spec")
    return {
        "model_name": types.String(default="gpt2-small", required=True),
        "max_seq_length": types.Integer(
            default=DEFAULTS.MAX_SEQ_LENGTH, min_val=1, max_val=2048, required=False
        ),
        "compute_gradients": types.Boolean(default=DEFAULTS.COMPUTE_GRADIENTS, required=False),
        "output_attention": types.Boolean(default=DEFAULTS.OUTPUT_ATTENTION, required=False),
        "output_embeddings": types.Boolean(default=DEFAULTS.OUTPUT_EMBEDDINGS, required=False),
    }


def input_spec(config: HookedTransformerLITConfig) -> Spec:
    """The text, and the optional fields LIT's salience and Integrated Gradients may send."""
    types = _types("HookedTransformerLIT.input_spec")
    spec: Spec = {
        INPUT_FIELDS.TEXT: types.TextSegment(),
        INPUT_FIELDS.TOKENS: types.Tokens(parent=INPUT_FIELDS.TEXT, required=False),
    }
    if config.output_embeddings:
        spec[INPUT_FIELDS.TOKEN_EMBEDDINGS] = types.TokenEmbeddings(
            align=INPUT_FIELDS.TOKENS, required=False
        )
    if config.compute_gradients:
        spec[INPUT_FIELDS.TARGET_MASK] = types.Tokens(parent=INPUT_FIELDS.TEXT, required=False)
    return spec


def output_spec(config: HookedTransformerLITConfig, n_layers: int, layers: list[int]) -> Spec:
    """Every field predict writes under `config`, for a model of `n_layers` whose mean
    residual stream is output after `layers`."""
    types = _types("HookedTransformerLIT.output_spec")
    tokens = OUTPUT_FIELDS.TOKENS
    spec: Spec = {
        tokens: types.Tokens(parent=INPUT_FIELDS.TEXT),
        OUTPUT_FIELDS.TOP_K_TOKENS: types.TokenTopKPreds(align=tokens),
    }
    if config.output_embeddings:
        spec[OUTPUT_FIELDS.INPUT_EMBEDDINGS] = types.TokenEmbeddings(align=tokens)
        spec[OUTPUT_FIELDS.CLS_EMBEDDING] = types.Embeddings()
        spec[OUTPUT_FIELDS.MEAN_EMBEDDING] = types.Embeddings()
        for layer in layers:
            spec[OUTPUT_FIELDS.LAYER_EMB_TEMPLATE.format(layer=layer)] = types.Embeddings()
    if config.output_attention:
        for layer in range(n_layers):
            spec[OUTPUT_FIELDS.LAYER_ATTENTION_TEMPLATE.format(layer=layer)] = types.AttentionHeads(
                align_in=tokens, align_out=tokens
            )
    if config.compute_gradients:
        # grad_for names the embeddings the gradient is taken against (for grad . input).
        for field in (OUTPUT_FIELDS.GRAD_L2, OUTPUT_FIELDS.GRAD_DOT_INPUT):
            spec[field] = types.TokenGradients(
                align=tokens, grad_for=OUTPUT_FIELDS.INPUT_EMBEDDINGS
            )
    return spec
