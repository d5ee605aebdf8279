"""First contact offline: loading a name whose weights are not on disk fails with an error
that says what works (hf_model=, a save_pretrained directory, the local HF cache) and, for
a name that is not official, whether its architecture loads here. Every test runs with
HF_HUB_OFFLINE=1 and an empty temporary Hugging Face cache; none touches the network."""

import json

import pytest
import torch

from tests.helpers import assert_close
from tests.tiny_hf import tiny_hf
from transformer_lens import HookedTransformer
from transformer_lens import loading_from_pretrained as lfp
from transformer_lens.pretrained.hub import CheckpointUnavailableError
from transformer_lens.pretrained.name_hints import UnknownModelNameError, series_architecture

pytestmark = pytest.mark.filterwarnings(
    "ignore:Could not load a tokenizer:UserWarning",
    "ignore:No tokenizer files:UserWarning",
)
TOKENS = torch.tensor([[3, 17, 99, 0, 42, 7]])
WHAT_WORKS = ("hf_model=", "save_pretrained", "HF_HUB_OFFLINE=1 with the checkpoint in the local")


@pytest.fixture(autouse=True)
def _offline(no_network):
    """Every test here runs with sockets refused (the conftest fixture)."""


@pytest.fixture(autouse=True)
def empty_offline_hub(monkeypatch, tmp_path):
    """HF_HUB_OFFLINE=1 and an empty cache. huggingface_hub reads both variables when it is
    imported, so its constants are set too."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-home" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(cache.parent))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():
        yield


def tiny_gpt2():
    return tiny_hf("gpt2", random_norms=False, vocab_size=100, n_positions=32)


def cache_snapshot(cache, repo: str):
    """An empty snapshot directory of repo at main in the HF cache."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    snapshot = folder / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0123abcd")
    return snapshot


# ----- official names whose checkpoint is not cached ------------------------------------------
@pytest.mark.parametrize(
    "load",
    [
        HookedTransformer.from_pretrained,
        HookedTransformer.from_pretrained_no_processing,
        lambda name: lfp.get_pretrained_state_dict(name, lfp.get_pretrained_model_config(name)),
    ],
    ids=["from_pretrained", "no_processing", "get_pretrained_state_dict"],
)
def test_official_name_not_in_an_empty_offline_cache_says_what_works(load, empty_offline_hub):
    from huggingface_hub.errors import LocalEntryNotFoundError

    with pytest.raises(CheckpointUnavailableError) as raised:
        load("gpt2")
    message = str(raised.value)
    assert "'gpt2'" in message and "not in the local Hugging Face cache" in message
    assert str(empty_offline_hub) in message and "HF_HUB_OFFLINE is set" in message
    for way in WHAT_WORKS:
        assert way in message, way
    assert isinstance(raised.value, FileNotFoundError)  # as huggingface_hub's error was
    assert isinstance(raised.value.__cause__, LocalEntryNotFoundError)


def test_official_name_whose_download_fails_names_the_hub_error(monkeypatch):
    """Online, but the hub cannot be reached: the message carries the hub's error."""
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    real_snapshot_download = huggingface_hub.snapshot_download
    failure = ConnectionError("huggingface.co is unreachable")

    def snapshot_download(repo, **kwargs):
        if kwargs.get("local_files_only"):
            return real_snapshot_download(repo, **kwargs)
        raise failure

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    with pytest.raises(CheckpointUnavailableError) as raised:
        HookedTransformer.from_pretrained("gpt2-small")
    assert "ConnectionError: huggingface.co is unreachable" in str(raised.value)
    assert "hf_model=" in str(raised.value)
    assert raised.value.__cause__ is failure


def test_official_name_in_the_offline_cache_loads_as_the_message_says(empty_offline_hub):
    hf_model = tiny_gpt2()
    hf_model.save_pretrained(cache_snapshot(empty_offline_hub, "gpt2"))
    model = HookedTransformer.from_pretrained_no_processing("gpt2")
    assert_close(model(TOKENS), hf_model(TOKENS).logits, 1e-5, "logits from the offline cache")


# ----- names that are not official --------------------------------------------------------------
def unknown_name_error(name: str) -> UnknownModelNameError:
    with pytest.raises(UnknownModelNameError) as raised:
        HookedTransformer.from_pretrained(name)
    return raised.value


def test_unofficial_name_of_a_supported_series_says_its_architecture_loads():
    error = unknown_name_error("Qwen/Qwen2.5-0.5B")
    message = str(error)
    assert "'Qwen/Qwen2.5-0.5B' is not an official model name" in message
    assert "No such model directory" not in message
    assert "Qwen2ForCausalLM model, an architecture that loads here" in message
    assert "hf_model=" in message and "save_pretrained" in message
    # Only official names load from the cache, so that is not offered.
    assert "HF_HUB_OFFLINE=1 with" not in message
    # Both old handlers still match: classic raised ValueError, this fork FileNotFoundError.
    assert isinstance(error, ValueError) and isinstance(error, FileNotFoundError)
    assert isinstance(error.__cause__, ValueError)
    assert "known names" in str(error.__cause__)


@pytest.mark.parametrize(
    "name, architecture",
    [
        ("Qwen/Qwen2.5-VL-3B-Instruct", "Qwen2_5_VLForConditionalGeneration"),
        ("facebook/opt-125m", "OPTForCausalLM"),
        ("google/gemma-3-4b-it", "Gemma3ForConditionalGeneration"),
    ],
)
def test_unofficial_name_of_an_unsupported_series_says_so(name, architecture):
    message = str(unknown_name_error(name))
    assert f"{architecture} model, an architecture not supported here" in message
    assert "GPT2LMHeadModel" in message  # the supported list


def test_longest_series_prefix_wins():
    assert series_architecture("qwen/qwen2.5-7b") == "Qwen2ForCausalLM"
    assert series_architecture("Qwen/Qwen2.5-VL-7B") == "Qwen2_5_VLForConditionalGeneration"
    assert series_architecture("google/gemma-2-9b") == "Gemma2ForCausalLM"
    assert series_architecture("somebody/model") is None


def test_unofficial_name_with_a_cached_config_names_its_architecture(empty_offline_hub):
    snapshot = cache_snapshot(empty_offline_hub, "somebody/tiny-model")
    (snapshot / "config.json").write_text(json.dumps({"architectures": ["Qwen2ForCausalLM"]}))
    message = str(unknown_name_error("somebody/tiny-model"))
    assert "config.json in the local Hugging Face cache names ['Qwen2ForCausalLM']" in message
    assert "loads here" in message and str(snapshot) in message


def test_unofficial_name_with_a_cached_unsupported_config_says_so(empty_offline_hub):
    snapshot = cache_snapshot(empty_offline_hub, "Qwen/Qwen2.5-mystery")
    (snapshot / "config.json").write_text(json.dumps({"architectures": ["BertForMaskedLM"]}))
    message = str(unknown_name_error("Qwen/Qwen2.5-mystery"))
    # The cached config outranks the name's series.
    assert "names ['BertForMaskedLM'], an architecture not supported here" in message


def test_unofficial_name_of_unknown_series_lists_supported_architectures():
    message = str(unknown_name_error("somebody/some-model"))
    assert "architecture is unknown offline" in message and "LlamaForCausalLM" in message


def test_unofficial_bare_name_keeps_the_value_error_message():
    with pytest.raises(ValueError, match="'no-such-model' is not an official model name"):
        lfp.get_pretrained_model_config("no-such-model")


def test_model_not_hosted_on_the_hub_asks_for_hf_model():
    assert "not hosted on the Hugging Face Hub" in str(unknown_name_error("llama-7b-hf"))


def test_a_deeper_path_that_does_not_exist_is_a_missing_directory(tmp_path):
    path = str(tmp_path / "models" / "tiny")
    with pytest.raises(FileNotFoundError, match="No such model directory") as raised:
        HookedTransformer.from_pretrained(path)
    assert not isinstance(raised.value, UnknownModelNameError)


def test_unofficial_name_loads_through_hf_model_as_the_message_says():
    hf_model = tiny_hf("qwen2", random_norms=False, vocab_size=100, num_attention_heads=4)
    model = HookedTransformer.from_pretrained_no_processing("Qwen/Qwen2.5-0.5B", hf_model=hf_model)
    assert_close(model(TOKENS), hf_model(TOKENS).logits, 1e-5, "logits through hf_model=")
