"""Tiny random HookedTransformers for the analysis and patching tests: GPT-2-like (LayerNorm,
learned positions) and Llama-like grouped (RMSNorm, rotary, gated MLP, 4 query heads on 2
key/value heads), with random biases and norm weights so that a dropped bias shows."""

import torch

from transformer_lens import HookedTransformer, HookedTransformerConfig

N_LAYERS, D_MODEL, D_HEAD, N_HEADS, N_KV, D_MLP, D_VOCAB, N_CTX = 2, 32, 8, 4, 2, 48, 61, 16

KINDS = ("gpt2_like", "grouped")


def config(kind: str, **overrides) -> HookedTransformerConfig:
    fields = dict(
        n_layers=N_LAYERS,
        d_model=D_MODEL,
        d_head=D_HEAD,
        n_heads=N_HEADS,
        d_mlp=D_MLP,
        d_vocab=D_VOCAB,
        n_ctx=N_CTX,
        seed=0,
        dtype=torch.float32,
        device="cpu",
    )
    if kind == "gpt2_like":
        fields.update(act_fn="gelu_new", normalization_type="LN")
    elif kind == "grouped":
        fields.update(
            act_fn="silu",
            normalization_type="RMS",
            positional_embedding_type="rotary",
            gated_mlp=True,
            n_key_value_heads=N_KV,
        )
    else:
        raise ValueError(kind)
    fields.update(overrides)
    return HookedTransformerConfig(**fields)


@torch.no_grad()
def randomize_biases_and_norms(model: HookedTransformer, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1].lstrip("_")
        noise = torch.randn(param.shape, generator=generator, dtype=param.dtype)
        if leaf == "w":
            param.copy_(1 + 0.3 * noise)
        elif leaf.startswith("b"):
            param.copy_(0.2 * noise)


def build(kind: str, processed: bool = False, **overrides) -> HookedTransformer:
    model = HookedTransformer(config(kind, **overrides))
    randomize_biases_and_norms(model)
    if processed:
        layer_norm = model.cfg.normalization_type == "LN" and not model.cfg.final_rms
        model.process_weights_(center_writing_weights=layer_norm)
    return model.eval()


def tokens(batch: int = 2, pos: int = 7, seed: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, D_VOCAB, (batch, pos), generator=generator)
