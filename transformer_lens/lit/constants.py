"""Names and defaults the LIT integration shares: input/output field names, wrapper defaults,
hook-name templates, error texts and server defaults. Frozen dataclasses with one instance
each, so `INPUT_FIELDS.TEXT` reads like an enum and cannot be reassigned."""

from dataclasses import dataclass


@dataclass(frozen=True)
class InputFieldNames:
    """Fields of an input example (HookedTransformerLIT.input_spec)."""

    TEXT: str = "text"
    TOKENS: str = "tokens"
    TOKEN_EMBEDDINGS: str = "token_embeddings"
    TARGET: str = "target"
    TARGET_MASK: str = "target_mask"


@dataclass(frozen=True)
class OutputFieldNames:
    """Fields of a prediction (HookedTransformerLIT.output_spec); `*_TEMPLATE` take
    `.format(layer=..., head=...)`."""

    TOKENS: str = "tokens"
    TOKEN_IDS: str = "token_ids"
    LOGITS: str = "logits"
    TOP_K_TOKENS: str = "top_k_tokens"
    GENERATED_TEXT: str = "generated_text"
    PROBAS: str = "probas"
    LOSS: str = "loss"
    LAYER_EMB_TEMPLATE: str = "layer_{layer}/embeddings"
    CLS_EMBEDDING: str = "cls_embedding"
    MEAN_EMBEDDING: str = "mean_embedding"
    ATTENTION_TEMPLATE: str = "layer_{layer}/head_{head}/attention"
    LAYER_ATTENTION_TEMPLATE: str = "layer_{layer}/attention"
    TOKEN_GRADIENTS: str = "token_gradients"
    GRAD_L2: str = "grad_l2"
    GRAD_DOT_INPUT: str = "grad_dot_input"
    INPUT_EMBEDDINGS: str = "input_embeddings"


INPUT_FIELDS = InputFieldNames()
OUTPUT_FIELDS = OutputFieldNames()


@dataclass(frozen=True)
class DefaultConfig:
    """Defaults of HookedTransformerLITConfig. DEVICE None means the model's device."""

    MAX_SEQ_LENGTH: int = 512
    BATCH_SIZE: int = 8
    TOP_K: int = 10
    COMPUTE_GRADIENTS: bool = True
    OUTPUT_ATTENTION: bool = True
    OUTPUT_EMBEDDINGS: bool = True
    OUTPUT_ALL_LAYERS: bool = False
    EMBEDDING_LAYERS: tuple | None = None
    PREPEND_BOS: bool = True
    DEVICE: str | None = None
    USE_FP16: bool = False


DEFAULTS = DefaultConfig()


@dataclass(frozen=True)
class HookPointNames:
    """HookedTransformer hook names; `*_TEMPLATE` take `.format(layer=...)`."""

    HOOK_EMBED: str = "hook_embed"
    HOOK_POS_EMBED: str = "hook_pos_embed"
    HOOK_TOKENS: str = "hook_tokens"
    RESID_PRE_TEMPLATE: str = "blocks.{layer}.hook_resid_pre"
    RESID_POST_TEMPLATE: str = "blocks.{layer}.hook_resid_post"
    RESID_MID_TEMPLATE: str = "blocks.{layer}.hook_resid_mid"
    ATTN_OUT_TEMPLATE: str = "blocks.{layer}.hook_attn_out"
    ATTN_PATTERN_TEMPLATE: str = "blocks.{layer}.attn.hook_pattern"
    ATTN_SCORES_TEMPLATE: str = "blocks.{layer}.attn.hook_attn_scores"
    Q_TEMPLATE: str = "blocks.{layer}.attn.hook_q"
    K_TEMPLATE: str = "blocks.{layer}.attn.hook_k"
    V_TEMPLATE: str = "blocks.{layer}.attn.hook_v"
    MLP_OUT_TEMPLATE: str = "blocks.{layer}.hook_mlp_out"
    MLP_PRE_TEMPLATE: str = "blocks.{layer}.mlp.hook_pre"
    MLP_POST_TEMPLATE: str = "blocks.{layer}.mlp.hook_post"
    LN_FINAL: str = "ln_final.hook_normalized"


HOOK_POINTS = HookPointNames()

LIT_TYPE_MAPPING: dict[str, str] = {
    "text": "TextSegment",
    "tokens": "Tokens",
    "embeddings": "Embeddings",
    "token_embeddings": "TokenEmbeddings",
    "attention": "AttentionHeads",
    "gradients": "TokenGradients",
    "multiclass": "MulticlassPreds",
    "regression": "RegressionScore",
    "generated_text": "GeneratedText",
    "top_k_tokens": "TokenTopKPreds",
}
"""Kind of output -> name of the lit_nlp.api.types class that describes it."""


@dataclass(frozen=True)
class ErrorMessages:
    """Error texts; those with `{...}` take `.format(...)`."""

    NO_TOKENIZER: str = (
        "HookedTransformer has no tokenizer. "
        "Please load a model with a tokenizer or set one manually."
    )
    INVALID_MODEL: str = "Model must be an instance of HookedTransformer. Got: {model_type}"
    # Names this fork's extra rather than classic's bare `pip install lit-nlp`.
    LIT_NOT_INSTALLED: str = (
        "LIT (lit-nlp) is not installed (transformer_lens does not depend on it): "
        'pip install "transformer-lens[lit]" (or pip install lit-nlp)'
    )
    INCOMPATIBLE_INPUT: str = (
        "Input does not match the expected input_spec. Expected fields: {expected}, got: {actual}"
    )
    BATCH_SIZE_MISMATCH: str = "Batch size mismatch. Expected {expected}, got {actual}"


ERRORS = ErrorMessages()


@dataclass(frozen=True)
class ServerConfig:
    """Defaults of `serve`."""

    DEFAULT_PORT: int = 5432
    DEFAULT_HOST: str = "localhost"
    DEFAULT_TITLE: str = "TransformerLens + LIT"
    DEV_MODE: bool = False
    WARM_START: bool = True
    MAX_EXAMPLES: int = 1000


SERVER_CONFIG = ServerConfig()
