"""The classic conversion functions (weight_conversions): convert_gemma_weights returns the
unprocessed state dict in our keys."""

import copy

import torch

from tests.unit.pretrained.loading import LOADING_MARKS
from transformer_lens import HookedTransformer, loading_from_pretrained
from transformer_lens.pretrained.weight_conversions import convert_gemma_weights

pytestmark = LOADING_MARKS


def test_convert_gemma_weights_returns_the_unprocessed_state_dict(hf_gemma):
    hf_config = copy.deepcopy(hf_gemma.config)
    hf_config.architectures = ["GemmaForCausalLM"]
    cfg = loading_from_pretrained.get_pretrained_model_config("google/gemma-2b", hf_cfg=hf_config)
    state_dict = convert_gemma_weights(hf_gemma, cfg)
    hf = hf_gemma.model
    embed = hf.embed_tokens.weight
    assert torch.equal(
        state_dict["embed.W_E"], embed * torch.tensor(cfg.d_model**0.5, dtype=embed.dtype)
    )
    assert torch.equal(state_dict["embed.W_E"], embed * 8.0)  # sqrt(64)
    for layer in range(cfg.n_layers):
        block, hf_layer = f"blocks.{layer}.", hf.layers[layer]
        assert torch.equal(state_dict[block + "ln1.w"], 1 + hf_layer.input_layernorm.weight)
        assert torch.equal(
            state_dict[block + "ln2.w"], 1 + hf_layer.post_attention_layernorm.weight
        )
        assert state_dict[block + "attn._W_K"].shape == (1, 64, 16)
        assert torch.equal(state_dict[block + "attn._b_V"], torch.zeros(1, 16))
        assert torch.equal(state_dict[block + "mlp.W_gate"], hf_layer.mlp.gate_proj.weight.T)
    assert torch.equal(state_dict["ln_final.w"], 1 + hf.norm.weight)
    assert torch.equal(state_dict["unembed.W_U"], hf_gemma.lm_head.weight.T)
    model = HookedTransformer(cfg)
    assert set(state_dict) == {k for k in model.state_dict() if "rotary" not in k}
