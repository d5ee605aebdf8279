"""The loader (API.md §9) on tiny random Gemma models: from an in-memory HF model, from a
checkpoint directory, from the local hub cache under an official name, and with a tokenizer
passed in. Nothing here may touch the network."""

import copy
import warnings

import pytest
import torch

from tests.helpers import assert_close
from tests.tiny_hf import tiny_hf
from tests.unit.pretrained.loading import LOADING_MARKS, TOKENS, hf_log_probs
from transformer_lens import HookedTransformer

pytestmark = LOADING_MARKS


def test_tiny_hf_model_under_an_official_name_warns_and_works_on_tokens(hf_gemma):
    with pytest.warns(UserWarning) as record:
        model = HookedTransformer.from_pretrained("google/gemma-2b", hf_model=hf_gemma)
    messages = [str(warning.message) for warning in record]
    differs = [m for m in messages if "differs from the official google/gemma-2b" in m]
    assert differs and "d_model" in differs[0] and "n_layers" in differs[0]
    assert any("Could not load a tokenizer" in m for m in messages)
    assert model.tokenizer is None
    assert (model.cfg.n_layers, model.cfg.d_model, model.cfg.d_vocab) == (2, 64, 101)
    assert_close(
        model(TOKENS).log_softmax(dim=-1),
        hf_log_probs(hf_gemma, TOKENS),
        atol=1e-5,
        what="log-probs",
    )


def test_no_processing_logits_equal_hf(hf_gemma):
    model = HookedTransformer.from_pretrained_no_processing("google/gemma-2b", hf_model=hf_gemma)
    assert model.cfg.normalization_type == "RMS"
    assert_close(model(TOKENS), hf_gemma(TOKENS).logits, atol=1e-5, what="logits")


def test_no_processing_lets_a_flag_turn_its_step_back_on(hf_gemma):
    """As in classic TransformerLens: the processing flags are defaults, not overrides."""
    model = HookedTransformer.from_pretrained_no_processing(
        "google/gemma-2b", hf_model=hf_gemma, fold_ln=True
    )
    assert model.cfg.normalization_type == "RMSPre"
    assert_close(model(TOKENS), hf_gemma(TOKENS).logits, atol=1e-5, what="fold_ln only")


def test_first_n_layers_equals_hf_with_layers_deleted(hf_gemma):
    reference = copy.deepcopy(hf_gemma)
    reference.model.layers = reference.model.layers[:1]
    reference.config.num_hidden_layers = 1
    model = HookedTransformer.from_pretrained_no_processing(
        "google/gemma-2b", hf_model=hf_gemma, first_n_layers=1
    )
    assert model.cfg.n_layers == 1 and len(model.blocks) == 1
    assert_close(model(TOKENS), reference(TOKENS).logits, atol=1e-5, what="1-layer logits")
    processed = HookedTransformer.from_pretrained(
        "google/gemma-2b", hf_model=hf_gemma, first_n_layers=1
    )
    assert_close(
        processed(TOKENS).log_softmax(dim=-1),
        hf_log_probs(reference, TOKENS),
        atol=1e-5,
        what="1-layer log-probs (processed)",
    )


def test_saved_checkpoint_loads_by_path(hf_gemma, checkpoint_dir):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        model = HookedTransformer.from_pretrained_no_processing(str(checkpoint_dir))
    assert not any("official" in str(warning.message) for warning in record)
    assert model.cfg.model_name == "tiny-gemma"
    assert model.cfg.original_architecture == "GemmaForCausalLM"
    assert_close(model(TOKENS), hf_gemma(TOKENS).logits, atol=1e-5, what="logits from directory")


def test_saved_checkpoint_loads_by_path_with_processing(hf_gemma, checkpoint_dir):
    model = HookedTransformer.from_pretrained(str(checkpoint_dir))
    assert model.cfg.normalization_type == "RMSPre"
    assert_close(
        model(TOKENS).log_softmax(dim=-1),
        hf_log_probs(hf_gemma, TOKENS),
        atol=1e-5,
        what="log-probs",
    )


def test_checkpoint_without_tokenizer_files_warns_and_has_no_tokenizer(checkpoint_dir):
    with pytest.warns(UserWarning, match="No tokenizer files"):
        model = HookedTransformer.from_pretrained_no_processing(str(checkpoint_dir))
    assert model.tokenizer is None


def test_directory_that_does_not_exist_raises_file_not_found(tmp_path):
    missing = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="missing"):
        HookedTransformer.from_pretrained(missing)


def test_bare_unknown_name_is_treated_as_a_model_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # so no directory of that name can exist
    with pytest.raises(ValueError, match="'missing-model' is not an official model name"):
        HookedTransformer.from_pretrained("missing-model")


def test_checkpoint_missing_a_tensor_raises_naming_the_hf_key(hf_gemma, tmp_path):
    from safetensors.torch import save_file

    dropped = "model.layers.1.mlp.down_proj.weight"
    tensors = {
        key: value.clone().contiguous()
        for key, value in hf_gemma.state_dict().items()
        if key not in (dropped, "lm_head.weight")  # lm_head is tied to the embedding
    }
    save_file(tensors, str(tmp_path / "model.safetensors"))
    config = copy.deepcopy(hf_gemma.config)
    config.architectures = ["GemmaForCausalLM"]
    config.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="missing HF keys") as raised:
        HookedTransformer.from_pretrained(str(tmp_path))
    assert dropped in str(raised.value)


def test_checkpoint_with_an_extra_tensor_raises_naming_it(hf_gemma, tmp_path):
    from safetensors.torch import save_file

    tensors = {k: v.clone() for k, v in hf_gemma.state_dict().items() if k != "lm_head.weight"}
    tensors["model.layers.0.self_attn.q_norm.weight"] = torch.ones(16)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    config = copy.deepcopy(hf_gemma.config)
    config.architectures = ["GemmaForCausalLM"]
    config.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="model.layers.0.self_attn.q_norm.weight"):
        HookedTransformer.from_pretrained(str(tmp_path))


def test_official_name_loads_from_the_local_hub_cache_with_its_own_config(tmp_path):
    """An official name finds its snapshot in the Hugging Face cache with no network, and
    the snapshot's config.json (here: a 2-layer tiny model) describes the weights, not the
    shipped table (18 layers)."""
    snapshot = tmp_path / "models--google--gemma-2b" / "snapshots" / "0123abcd"
    hf = tiny_hf("gemma", random_norms=False, num_key_value_heads=1)
    hf.save_pretrained(snapshot)
    (tmp_path / "models--google--gemma-2b" / "refs").mkdir()
    (tmp_path / "models--google--gemma-2b" / "refs" / "main").write_text("0123abcd")
    with pytest.warns(UserWarning):  # no tokenizer files in the snapshot
        model = HookedTransformer.from_pretrained_no_processing("gemma-2b", cache_dir=str(tmp_path))
    assert model.cfg.n_layers == 2 and model.cfg.d_model == 64
    tokens = torch.randint(0, 101, (1, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert_close(model(tokens), hf(tokens).logits, 1e-5, "logits from the cached snapshot")


@pytest.fixture(scope="module")
def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"])
    sentences = ["hello world", "the cat sat on the mat", "hello there cat", "a world of cats"]
    tokenizer.train_from_iterator(sentences, trainer)
    # The tokenizer adds BOS itself, so a naive to_tokens would give two.
    bos_id = tokenizer.token_to_id("<bos>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def test_tokenizer_argument_is_attached_and_prepends_exactly_one_bos(hf_gemma, tiny_tokenizer):
    model = HookedTransformer.from_pretrained(
        "google/gemma-2b", hf_model=hf_gemma, tokenizer=tiny_tokenizer
    )
    assert model.tokenizer is tiny_tokenizer
    bos = tiny_tokenizer.bos_token_id
    for text in ("hello world", "<bos> hello world"):
        tokens = model.to_tokens(text)
        assert tokens.shape == (1, 3), text
        assert tokens[0, 0].item() == bos and (tokens[0, 1:] != bos).all(), tokens
    assert model.to_tokens("hello world", prepend_bos=False).tolist() == [
        [tiny_tokenizer.convert_tokens_to_ids(w) for w in ("hello", "world")]
    ]
    logits = model("hello world")
    assert torch.equal(logits, model(model.to_tokens("hello world")))


def test_left_padded_text_batch_matches_each_prompt_alone(hf_gemma, tiny_tokenizer):
    model = HookedTransformer.from_pretrained(
        "google/gemma-2b", hf_model=hf_gemma, tokenizer=tiny_tokenizer
    )
    prompts = ["hello world the cat sat", "the cat"]
    tokens = model.to_tokens(prompts, padding_side="left")
    assert tokens[1, :3].tolist() == [tiny_tokenizer.pad_token_id] * 3
    logits = model(prompts, padding_side="left")
    assert not logits.isnan().any()
    for row, prompt in enumerate(prompts):
        alone = model(prompt)
        length = alone.shape[1]
        assert_close(logits[row, -length:], alone[0], atol=1e-5, what=prompt)
