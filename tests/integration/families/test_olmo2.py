"""OLMo-2: the refusal, which names the architecture and what is missing, and the weight map
that is complete already. No parity row until the core supports it (families/olmo2.py)."""

import pytest
import torch

from tests.tiny_hf import VOCAB, tiny_hf
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.pretrained.convert import plan_state_dict
from transformer_lens.pretrained.families.olmo2 import OLMO2
from transformer_lens.pretrained.weight_conversions import convert_olmo2_weights

OLMO2_REFUSAL = r"Olmo2ForCausalLM: OLMo-2's full-width q/k norm and post-only norms are not supported yet"  # fmt: skip


def tiny_olmo2() -> torch.nn.Module:
    return tiny_hf("olmo2", num_key_value_heads=2)


def olmo2_config_as_it_would_be() -> HookedTransformerConfig:
    return HookedTransformerConfig(
        n_layers=2,
        d_model=64,
        n_ctx=64,
        d_head=8,
        n_heads=8,
        n_key_value_heads=2,
        d_mlp=96,
        d_vocab=VOCAB,
        act_fn="silu",
        normalization_type="RMS",
        positional_embedding_type="rotary",
        gated_mlp=True,
        use_qk_norm=True,
        use_normalization_before_and_after=True,
    )


def test_olmo2_loading_refuses_naming_the_architecture(tmp_path):
    hf = tiny_olmo2()
    with pytest.raises(ValueError, match=OLMO2_REFUSAL):
        HookedTransformer.from_pretrained_no_processing("allenai/OLMo-2-tiny", hf_model=hf)
    hf.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=OLMO2_REFUSAL):
        HookedTransformer.from_pretrained(str(tmp_path))


def test_olmo2_classic_weight_conversion_refuses_too():
    with pytest.raises(ValueError, match=OLMO2_REFUSAL):
        convert_olmo2_weights(tiny_olmo2(), olmo2_config_as_it_would_be())


def test_olmo2_weight_map_uses_every_checkpoint_weight():
    """The adapter's declared map is complete, so only the core change stands between
    OLMo-2 and loading (see families/olmo2.py)."""
    keys = tiny_olmo2().state_dict().keys()
    planned = plan_state_dict(OLMO2, olmo2_config_as_it_would_be(), keys)
    assert {p.hf_key for p in planned if p.hf_key is not None} == set(keys)
    assert not any(p.key.startswith(("blocks.0.ln1.", "blocks.0.ln2.")) for p in planned)
