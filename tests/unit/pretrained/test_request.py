"""from_pretrained's arguments as one LoadRequest, and the processing flags declared once."""

import dataclasses
import inspect
import warnings

import pytest
import torch

from tests.unit.test_weight_processing import make_cfg
from transformer_lens import HookedTransformer
from transformer_lens.pretrained.request import LoadRequest
from transformer_lens.weight_processing import ProcessingFlags

FLAG_NAMES = [field.name for field in dataclasses.fields(ProcessingFlags)]


def from_pretrained_arguments(**overrides):
    """from_pretrained's locals() for a call with its defaults and these overrides."""
    signature = inspect.signature(HookedTransformer.from_pretrained)
    arguments = {
        name: parameter.default
        for name, parameter in signature.parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    arguments.update(model_name="gpt2", from_pretrained_kwargs={})
    arguments.update(overrides)
    return arguments


@pytest.mark.parametrize(
    "method",
    [
        HookedTransformer.from_pretrained,
        HookedTransformer.from_pretrained_no_processing,
        HookedTransformer.load_and_process_state_dict,
        HookedTransformer.process_weights_,
    ],
)
def test_every_entry_point_defaults_its_flags_as_classic_and_the_declaration_knows_them(method):
    """Each entry point's flag parameters are fields of ProcessingFlags, and a call with
    no flags builds exactly the flags its defaults say."""
    parameters = inspect.signature(method).parameters
    taken = {name: parameters[name].default for name in FLAG_NAMES if name in parameters}
    assert taken, "the entry point takes no processing flag"
    expected = dataclasses.replace(ProcessingFlags(), **taken)
    assert ProcessingFlags.from_arguments(taken) == expected
    if method is HookedTransformer.process_weights_:  # classic: value biases always folded
        assert "fold_value_biases" not in parameters and expected.fold_value_biases


def test_from_arguments_ignores_other_arguments_and_keeps_absent_flags_at_their_defaults():
    flags = ProcessingFlags.from_arguments({"self": object(), "fold_ln": False, "dtype": "x"})
    assert flags == ProcessingFlags(fold_ln=False)
    assert ProcessingFlags.none().any() is False and ProcessingFlags().any() is True
    assert ProcessingFlags.none().as_keywords() == dict.fromkeys(FLAG_NAMES, False)


def test_that_apply_turns_off_inexact_steps_with_one_warning_each():
    cfg = make_cfg(normalization_type="RMS", output_logits_soft_cap=30.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        applied = ProcessingFlags().that_apply(cfg)
    assert applied == ProcessingFlags(center_writing_weights=False, center_unembed=False)
    texts = sorted(str(w.message).split(":")[0] for w in caught)
    assert texts == ["center_unembed skipped", "center_writing_weights skipped"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # steps already off: nothing to say
        assert ProcessingFlags.none().that_apply(cfg) == ProcessingFlags.none()
        layer_norm = make_cfg(normalization_type="LN")
        assert ProcessingFlags().that_apply(layer_norm) == ProcessingFlags()


def test_a_request_gathers_from_pretrained_arguments():
    arguments = from_pretrained_arguments(
        fold_ln=False,
        dtype="bfloat16",
        n_ctx=64,
        from_pretrained_kwargs={"revision": "main", "progress_bar": True},
    )
    request = LoadRequest.from_arguments(arguments)
    assert request.flags == ProcessingFlags(fold_ln=False)
    assert request.config_options["dtype"] == torch.bfloat16
    assert request.config_options["n_ctx"] == 64
    assert dict(request.hub_kwargs) == {"revision": "main"}
    assert request.progress_bar and not request.share_hf_tensors


def test_torch_dtype_is_dtype_by_another_name():
    arguments = from_pretrained_arguments(from_pretrained_kwargs={"torch_dtype": "float16"})
    assert LoadRequest.from_arguments(arguments).config_options["dtype"] == torch.float16


def test_unknown_keywords_and_quantised_loading_are_refused_by_name():
    with pytest.raises(TypeError, match="unexpected keyword arguments: \\['fold_layernorm'\\]"):
        LoadRequest.from_arguments(
            from_pretrained_arguments(from_pretrained_kwargs={"fold_layernorm": True})
        )
    with pytest.raises(ValueError, match="Quantised loading.*load_in_4bit"):
        LoadRequest.from_arguments(
            from_pretrained_arguments(from_pretrained_kwargs={"load_in_4bit": True})
        )


@pytest.mark.parametrize(
    "name, kind",
    [
        ("t5-small", "encoder-decoder"),
        ("google-t5/t5-base", "encoder-decoder"),
        ("bert-base-cased", "encoder"),
        ("hubert-base-ls960", "audio encoder"),
    ],
)
def test_classic_models_of_another_kind_are_refused_by_kind_offline(name, kind, no_network):
    with pytest.raises(RuntimeError, match=f"is an {kind} model; HookedTransformer is decoder"):
        HookedTransformer.from_pretrained(name)


def test_an_encoder_decoder_hf_model_or_directory_is_refused(tmp_path):
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(
        vocab_size=32,
        d_model=8,
        d_kv=4,
        d_ff=16,
        num_layers=1,
        num_heads=2,
        decoder_start_token_id=0,
    )
    t5 = T5ForConditionalGeneration(config)
    with pytest.raises(RuntimeError, match="encoder-decoder model"):
        HookedTransformer.from_pretrained("my-t5", hf_model=t5)
    t5.save_pretrained(tmp_path / "t5")
    with pytest.raises(RuntimeError, match="encoder-decoder model"):
        HookedTransformer.from_pretrained(str(tmp_path / "t5"))
