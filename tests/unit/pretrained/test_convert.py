"""HF config values the adapter cannot honour raise naming them: unsupported values, an
unknown attribute of an in-memory config, an unknown field of a saved config.json."""

import json

import pytest

from tests.tiny_hf import tiny_hf
from tests.unit.pretrained.loading import LOADING_MARKS
from transformer_lens import HookedTransformer

pytestmark = LOADING_MARKS


def gemma_with(**overrides):
    return tiny_hf("gemma", random_norms=False, num_key_value_heads=1, **overrides)


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        (dict(attention_bias=True), ("attention_bias",)),
        (
            dict(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}),
            ("rope", "'linear'"),
        ),
        (dict(use_bidirectional_attention=True), ("use_bidirectional_attention",)),
        (dict(hidden_act="quick_gelu"), ("act_fn", "'quick_gelu'")),
    ],
)
def test_unsupported_hf_config_values_raise(overrides, fragments):
    hf_model = gemma_with(**overrides)
    with pytest.raises(ValueError) as raised:
        HookedTransformer.from_pretrained("tiny-gemma", hf_model=hf_model)
    for fragment in fragments:
        assert fragment in str(raised.value), (fragment, str(raised.value))


def test_unknown_hf_config_attribute_raises_naming_it():
    hf_model = gemma_with(my_new_feature=3)
    with pytest.raises(ValueError, match="my_new_feature"):
        HookedTransformer.from_pretrained("tiny-gemma", hf_model=hf_model)


def test_unknown_field_in_a_saved_config_json_raises_naming_it(checkpoint_dir):
    config_path = checkpoint_dir / "config.json"
    fields = json.loads(config_path.read_text())
    fields["my_new_feature"] = 3
    config_path.write_text(json.dumps(fields))
    with pytest.raises(ValueError, match="my_new_feature"):
        HookedTransformer.from_pretrained(str(checkpoint_dir))
