"""The two tiny models that the forward, bad-input and no-leak tests share: a grouped
rotary RMS model with a gated MLP (4 query heads, 2 key/value heads) and a GPT-2-like
LayerNorm model, both 2 layers of width 32 with a 50-token vocabulary."""

import torch

from transformer_lens import HookedTransformer, HookedTransformerConfig

N_CTX, D_VOCAB, D_MODEL = 16, 50, 32
# rotary_base is a float only to dodge the annotation bug pinned down in test_config.py.
COMMON = dict(
    n_layers=2, d_model=D_MODEL, n_ctx=N_CTX, d_head=8, d_vocab=D_VOCAB, rotary_base=10000.0
)
GROUPED = dict(
    COMMON,
    n_heads=4,
    n_key_value_heads=2,
    act_fn="silu",
    normalization_type="RMS",
    positional_embedding_type="rotary",
    gated_mlp=True,
)
GPT2_LIKE = dict(COMMON, act_fn="gelu_new", normalization_type="LN")
MODELS = {"grouped": GROUPED, "gpt2_like": GPT2_LIKE}
TOKENS = torch.tensor([[1, 7, 3, 9, 22, 4], [5, 2, 49, 0, 11, 8]])


def build(fields: dict, **overrides) -> HookedTransformer:
    """A seeded model from one of the field sets above, with overrides."""
    return HookedTransformer(HookedTransformerConfig(**{**fields, **overrides}, seed=0))


def attached_hooks(model: HookedTransformer) -> int:
    """Hook functions of every kind still attached to the model's hook points."""
    return sum(
        len(hp._forward_hooks)
        + len(hp._forward_pre_hooks)
        + len(hp._backward_hooks)
        + len(hp._backward_pre_hooks)
        for hp in model.hook_dict.values()
    )
