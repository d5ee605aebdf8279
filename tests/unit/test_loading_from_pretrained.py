"""Classic names of `transformer_lens.loading_from_pretrained` beyond name resolution:
config dicts, state dicts, missing keys, basic configs, parameter counts, checkpoint labels
and NeelNanda-style config.json files. Tiny random GPT-2 models; no network."""

import inspect
import json
import logging
import math

import pytest
import torch

from tests.helpers import assert_close
from tests.tiny_hf import tiny_hf
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens import loading_from_pretrained as lfp
from transformer_lens.pretrained import checkpoints, hub, neel_config

pytestmark = pytest.mark.filterwarnings(
    "ignore:No tokenizer files:UserWarning",
    "ignore:Could not load a tokenizer:UserWarning",
)
TOKENS = torch.tensor([[3, 17, 99, 0, 42, 7], [64, 1, 5, 33, 8, 71]])


@pytest.fixture(autouse=True)
def _offline(no_network):
    """Every test here runs with sockets refused (the conftest fixture)."""


@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():
        yield


@pytest.fixture(scope="module")
def hf_gpt2():
    """A seeded random GPT2LMHeadModel: 2 layers, d_model 64, 4 heads, vocab 100, 32
    positions, with random norm weights and biases so that a dropped one shows."""
    return tiny_hf("gpt2", vocab_size=100, n_positions=32, bos_token_id=0, eos_token_id=0)


@pytest.fixture
def gpt2_dir(hf_gpt2, tmp_path):
    path = tmp_path / "tiny-gpt2"
    hf_gpt2.save_pretrained(path)
    return str(path)


def fake_hub_cache(root, repo: str, files: dict[str, str]) -> str:
    """A Hugging Face cache under root holding `files` (name -> text) for repo at main."""
    folder = root / ("models--" + repo.replace("/", "--"))
    snapshot = folder / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    for name, text in files.items():
        (snapshot / name).write_text(text)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0123abcd")
    return str(snapshot)


# ----- convert_hf_model_config ------------------------------------------------------------------
def test_convert_hf_model_config_of_a_directory_reads_its_config_json(gpt2_dir):
    fields = lfp.convert_hf_model_config(gpt2_dir)
    expected = dict(
        d_model=64, d_head=16, n_heads=4, d_mlp=256, n_layers=2, n_ctx=32, d_vocab=100,
        eps=1e-5, act_fn="gelu_new", normalization_type="LN",
        positional_embedding_type="standard", original_architecture="GPT2LMHeadModel",
        tokenizer_name=gpt2_dir,
    )  # fmt: skip
    assert {key: fields[key] for key in expected} == expected
    HookedTransformerConfig(**fields)  # a dict HookedTransformerConfig takes as it is


def test_convert_hf_model_config_of_official_names_has_the_api_table_facts():
    gpt2 = lfp.convert_hf_model_config("gpt2-small")
    assert (gpt2["n_layers"], gpt2["d_model"], gpt2["n_heads"], gpt2["d_head"]) == (12, 768, 12, 64)
    assert (gpt2["d_mlp"], gpt2["d_vocab"], gpt2["n_ctx"]) == (3072, 50257, 1024)
    assert gpt2["tokenizer_name"] == "gpt2" and gpt2["original_architecture"] == "GPT2LMHeadModel"
    llama = lfp.convert_hf_model_config("meta-llama/Llama-2-7b-hf")
    assert (llama["n_layers"], llama["d_model"], llama["n_heads"], llama["d_mlp"]) == (
        32, 4096, 32, 11008
    )  # fmt: skip
    assert (llama["d_vocab"], llama["n_ctx"], llama["eps"], llama["act_fn"]) == (
        32000, 4096, 1e-5, "silu"
    )  # fmt: skip
    assert llama["gated_mlp"] and llama["final_rms"] and llama["normalization_type"] == "RMS"


def test_convert_hf_model_config_marks_trust_remote_code_and_refuses_unknown_kwargs():
    assert "trust_remote_code" not in lfp.convert_hf_model_config("gpt2")
    assert lfp.convert_hf_model_config("gpt2", trust_remote_code=True)["trust_remote_code"]
    with pytest.raises(TypeError, match="not_an_option"):
        lfp.convert_hf_model_config("gpt2", not_an_option=1)


def test_convert_hf_model_config_of_an_unknown_name_raises_value_error():
    with pytest.raises(ValueError, match="'nobody/no-model' is not an official model name"):
        lfp.convert_hf_model_config("nobody/no-model")


# ----- get_pretrained_state_dict ----------------------------------------------------------------
def test_state_dict_from_hf_model_loads_into_a_model_that_matches_hf(hf_gpt2, gpt2_dir):
    cfg = lfp.get_pretrained_model_config(gpt2_dir)
    state_dict = lfp.get_pretrained_state_dict(gpt2_dir, cfg, hf_model=hf_gpt2)
    model = HookedTransformer(cfg)
    assert sorted(state_dict) == sorted(model.state_dict())
    model.load_state_dict(state_dict, strict=True)
    assert_close(model(TOKENS), hf_gpt2(TOKENS).logits, 1e-5, "logits")


def test_state_dict_is_unprocessed_in_our_layout(hf_gpt2, gpt2_dir):
    cfg = lfp.get_pretrained_model_config(gpt2_dir)
    state_dict = lfp.get_pretrained_state_dict(gpt2_dir, cfg, hf_model=hf_gpt2)
    c_attn = hf_gpt2.transformer.h[1].attn.c_attn.weight  # [d_model, 3 * d_model], Q K V
    for head in range(4):
        key_columns = c_attn[:, 64 + 16 * head : 64 + 16 * (head + 1)]
        assert torch.equal(state_dict["blocks.1.attn.W_K"][head], key_columns)
    # Not folded: the LayerNorm weights and the uncentred embedding are HF's own.
    assert torch.equal(state_dict["blocks.0.ln1.w"], hf_gpt2.transformer.h[0].ln_1.weight)
    assert torch.equal(state_dict["embed.W_E"], hf_gpt2.transformer.wte.weight)
    assert torch.equal(state_dict["unembed.W_U"], hf_gpt2.lm_head.weight.T)


def test_state_dict_from_a_directory_equals_the_one_from_the_hf_model(hf_gpt2, gpt2_dir):
    cfg = lfp.get_pretrained_model_config(gpt2_dir)
    from_directory = lfp.get_pretrained_state_dict(gpt2_dir, cfg)
    from_model = lfp.get_pretrained_state_dict("ignored-when-hf_model-is-given", cfg, hf_gpt2)
    assert sorted(from_directory) == sorted(from_model)
    for key, value in from_model.items():
        assert torch.equal(from_directory[key], value), key


def test_state_dict_of_an_official_name_comes_from_its_cached_snapshot(hf_gpt2, tmp_path):
    snapshot = tmp_path / "models--gpt2" / "snapshots" / "0123abcd"
    hf_gpt2.save_pretrained(snapshot)
    (tmp_path / "models--gpt2" / "refs").mkdir()
    (tmp_path / "models--gpt2" / "refs" / "main").write_text("0123abcd")
    cfg = lfp.get_pretrained_model_config(str(snapshot))
    state_dict = lfp.get_pretrained_state_dict("gpt2-small", cfg, cache_dir=str(tmp_path))
    assert torch.equal(state_dict["pos_embed.W_pos"], hf_gpt2.transformer.wpe.weight)


@pytest.mark.parametrize("by_keyword", [False, True], ids=["dtype", "torch_dtype"])
def test_state_dict_comes_in_the_requested_dtype(hf_gpt2, gpt2_dir, by_keyword):
    cfg = lfp.get_pretrained_model_config(gpt2_dir)
    options = {"torch_dtype": torch.bfloat16} if by_keyword else {"dtype": torch.bfloat16}
    state_dict = lfp.get_pretrained_state_dict(gpt2_dir, cfg, **options)
    assert {value.dtype for value in state_dict.values()} == {torch.bfloat16}
    wte = hf_gpt2.transformer.wte.weight
    assert torch.equal(state_dict["embed.W_E"], wte.to(torch.bfloat16))


def test_state_dict_refuses_unknown_kwargs_and_unsupported_architectures(gpt2_dir):
    cfg = lfp.get_pretrained_model_config(gpt2_dir)
    with pytest.raises(TypeError, match="load_in_2bit"):
        lfp.get_pretrained_state_dict(gpt2_dir, cfg, load_in_2bit=True)
    cfg.original_architecture = "OPTForCausalLM"
    with pytest.raises(ValueError, match="Unsupported architecture 'OPTForCausalLM'"):
        lfp.get_pretrained_state_dict(gpt2_dir, cfg)


def test_state_dict_of_a_model_not_on_the_hub_asks_for_hf_model(gpt2_dir):
    cfg = lfp.get_pretrained_model_config(gpt2_dir)
    assert "llama-7b-hf" in lfp.NON_HF_HOSTED_MODEL_NAMES
    with pytest.raises(NotImplementedError, match="pass hf_model="):
        lfp.get_pretrained_state_dict("llama-7b-hf", cfg)


# ----- fill_missing_keys ------------------------------------------------------------------------
def test_fill_missing_keys_takes_the_models_values_and_warns_for_weights_only(
    hf_gpt2, gpt2_dir, caplog
):
    cfg = lfp.get_pretrained_model_config(gpt2_dir)
    model = HookedTransformer(cfg)
    state_dict = lfp.get_pretrained_state_dict(gpt2_dir, cfg, hf_model=hf_gpt2)
    kept = state_dict["blocks.0.attn.W_Q"]
    for key in ("blocks.1.mlp.W_in", "blocks.0.ln2.w", "blocks.1.attn.b_O", "ln_final.b"):
        del state_dict[key]
    with caplog.at_level(logging.WARNING, logger="transformer_lens.loading_from_pretrained"):
        filled = lfp.fill_missing_keys(model, state_dict)
    assert filled is state_dict and sorted(filled) == sorted(model.state_dict())
    own = model.state_dict()
    for key in ("blocks.1.mlp.W_in", "blocks.0.ln2.w", "blocks.1.attn.b_O", "ln_final.b"):
        assert torch.equal(filled[key], own[key]), key
    assert filled["blocks.0.attn.W_Q"] is kept
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert "blocks.1.mlp.W_in" in warned and "blocks.0.ln2.w" in warned
    assert "b_O" not in warned and "ln_final.b" not in warned


def test_logger_is_the_loading_modules_logger():
    assert isinstance(lfp.logger, logging.Logger)
    assert lfp.logger.name == "transformer_lens.loading_from_pretrained"


# ----- Config, get_basic_config, get_num_params_of_pretrained -----------------------------------
def test_config_defaults_are_gpt2_small_sizes():
    assert lfp.Config() == lfp.Config(
        d_model=768, debug=True, layer_norm_eps=1e-5, d_vocab=50257, init_range=0.02,
        n_ctx=1024, d_head=64, d_mlp=3072, n_heads=12, n_layers=12,
    )  # fmt: skip


def test_basic_config_of_gemma_2b_carries_its_own_eps():
    """Classic left layer_norm_eps and init_range at their defaults for every model (it
    looked them up under names HookedTransformerConfig does not have)."""
    basic = lfp.get_basic_config("gemma-2b")
    assert (basic.d_model, basic.n_layers, basic.n_heads, basic.d_head) == (2048, 18, 8, 256)
    assert (basic.d_mlp, basic.d_vocab, basic.n_ctx) == (16384, 256000, 8192)
    assert basic.layer_norm_eps == 1e-6
    assert basic.init_range == pytest.approx(0.8 / math.sqrt(2048))
    assert basic.debug is True


def test_basic_config_of_a_directory_passes_overrides_on(gpt2_dir):
    basic = lfp.get_basic_config(gpt2_dir, n_ctx=16)
    assert (basic.d_model, basic.n_layers, basic.n_ctx, basic.d_vocab) == (64, 2, 16, 100)


def test_num_params_of_gpt2_counts_attention_and_mlp_weights():
    per_layer = 4 * 768 * 768 + 2 * 768 * 3072
    assert lfp.get_num_params_of_pretrained("gpt2") == 12 * per_layer == 84934656


# ----- names ------------------------------------------------------------------------------------
def test_alias_map_sends_every_lowercased_name_and_alias_to_its_official_name():
    alias_map = lfp.make_model_alias_map()
    assert alias_map["gpt2-small"] == "gpt2"
    assert alias_map["pythia-70m"] == "EleutherAI/pythia-70m"
    assert alias_map["google/gemma-2b"] == "google/gemma-2b"
    assert all(key == key.lower() for key in alias_map)
    for official, aliases in lfp.MODEL_ALIASES.items():
        for name in [official, *aliases]:
            assert alias_map[name.lower()] == official
            assert lfp.get_official_model_name(name.upper()) == official
    assert len(alias_map) == len(lfp.OFFICIAL_MODEL_NAMES) + sum(
        len(aliases) for aliases in lfp.MODEL_ALIASES.values()
    )


def test_names_needing_remote_code_are_prefixes():
    assert isinstance(lfp.NEED_REMOTE_CODE_MODELS, tuple)
    assert "Qwen/Qwen3-8B".startswith(lfp.NEED_REMOTE_CODE_MODELS)
    assert not "gpt2".startswith(lfp.NEED_REMOTE_CODE_MODELS)


# ----- checkpoints ------------------------------------------------------------------------------
def test_checkpoint_step_tables():
    assert lfp.PYTHIA_CHECKPOINTS[:12] == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000]
    assert lfp.PYTHIA_CHECKPOINTS[-1] == 143000 and len(lfp.PYTHIA_CHECKPOINTS) == 11 + 143
    assert lfp.PYTHIA_V0_CHECKPOINTS == [1000 * k for k in range(1, 144)]
    crfm = lfp.STANFORD_CRFM_CHECKPOINTS
    assert len(crfm) == 10 + 38 + 180 + 381 and crfm[-1] == 400000
    assert crfm[9:12] == [90, 100, 150] and crfm == sorted(set(crfm))


def test_pythia_checkpoint_labels_by_alias_warn_about_the_v0_models(caplog):
    with caplog.at_level(logging.WARNING, logger="transformer_lens.loading_from_pretrained"):
        labels, label_type = lfp.get_checkpoint_labels("pythia-70m")
    assert (labels, label_type) == (lfp.PYTHIA_CHECKPOINTS, "step")
    assert "-v0" in caplog.text
    assert lfp.get_checkpoint_labels("EleutherAI/pythia-160m-v0") == (
        lfp.PYTHIA_V0_CHECKPOINTS,
        "step",
    )


def test_checkpoint_labels_are_copies_of_the_tables():
    labels, _ = lfp.get_checkpoint_labels("stanford-crfm/alias-gpt2-small-x21")
    assert labels == lfp.STANFORD_CRFM_CHECKPOINTS
    labels.append(-1)
    assert lfp.STANFORD_CRFM_CHECKPOINTS[-1] == 400000


def test_a_model_without_checkpoints_raises_naming_it():
    with pytest.raises(ValueError, match="'gpt2' has no training checkpoints"):
        lfp.get_checkpoint_labels("gpt2-small")
    with pytest.raises(ValueError, match="not an official model name"):
        lfp.get_checkpoint_labels("no-such-model")


def test_neel_nanda_labels_come_sorted_from_the_repository_file_list(monkeypatch):
    listed: list[tuple] = []

    def list_repo_files(repo, **kwargs):
        listed.append((repo, kwargs))
        return [
            "config.json",
            "checkpoints/SoLU_1L_v9_old_20000.pth",
            "checkpoints/SoLU_1L_v9_old_3000.pth",
            "checkpoints/SoLU_1L_v9_old_100000.pth",
            "checkpoints/notes.txt",
            "model_final.pth",
        ]

    monkeypatch.setattr(hub, "list_repo_files", list_repo_files)
    labels = lfp.get_checkpoint_labels("NeelNanda/SoLU_1L_v9_old", revision="main")
    assert labels == ([3000, 20000, 100000], "step")
    assert listed == [("NeelNanda/SoLU_1L_v9_old", {"revision": "main"})]


def test_neel_nanda_labels_in_the_billions_are_tokens():
    files = [f"checkpoints/model_{n}.pth" for n in (2_000_000_000, 500_000_000)]
    assert checkpoints.labels_from_file_names("NeelNanda/x", files) == (
        [500_000_000, 2_000_000_000],
        "token",
    )
    with pytest.raises(ValueError, match="'NeelNanda/x' has no checkpoints"):
        checkpoints.labels_from_file_names("NeelNanda/x", ["checkpoints/model_.pth"])


def test_neel_nanda_labels_offline_say_the_hub_is_needed(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(hub.CheckpointUnavailableError, match="HF_HUB_OFFLINE") as raised:
        lfp.get_checkpoint_labels("NeelNanda/SoLU_1L_v9_old")
    assert "'NeelNanda/SoLU_1L_v9_old'" in str(raised.value)
    assert raised.value.__cause__ is not None


# ----- convert_neel_model_config ----------------------------------------------------------------
SOLU_CONFIG = {
    "d_model": 512, "n_layers": 1, "d_mlp": 2048, "d_head": 64, "n_heads": 8, "n_ctx": 1024,
    "d_vocab": 48262, "act_fn": "solu_ln", "attn_only": False, "normalization": "LN",
    "shortformer_pos": False, "tokenizer_name": "NeelNanda/gpt-neox-tokenizer-digits",
    "seed": 5, "lr": 1e-3,
}  # fmt: skip


def test_neel_config_maps_the_hooked_transformer_style_fields():
    fields = neel_config.neel_config_fields("NeelNanda/SoLU_1L512W_C4_Code", SOLU_CONFIG)
    assert fields == {
        "d_model": 512, "n_layers": 1, "d_mlp": 2048, "d_head": 64, "n_heads": 8,
        "n_ctx": 1024, "d_vocab": 48262, "act_fn": "solu_ln", "attn_only": False,
        "tokenizer_name": "NeelNanda/gpt-neox-tokenizer-digits", "final_rms": False,
        "original_architecture": "neel", "normalization_type": "LN",
        "positional_embedding_type": "standard",
    }  # fmt: skip


def test_neel_config_of_an_old_shortformer_model():
    cfg_json = {**SOLU_CONFIG, "shortformer_pos": True, "final_rms": True}
    del cfg_json["normalization"], cfg_json["tokenizer_name"]
    cfg_json["normalization_type"] = "LNPre"
    fields = neel_config.neel_config_fields("NeelNanda/SoLU_1L_v9_old", cfg_json)
    assert fields["original_architecture"] == "neel-solu-old"
    assert fields["positional_embedding_type"] == "shortformer"
    assert fields["normalization_type"] == "LNPre"
    assert fields["final_rms"] is True and fields["tokenizer_name"] is None
    named = neel_config.neel_config_fields("ArthurConmy/x", {**cfg_json, "architecture": "mingpt"})
    assert named["original_architecture"] == "mingpt"


def test_neel_config_without_a_needed_field_raises_naming_it():
    cfg_json = {key: value for key, value in SOLU_CONFIG.items() if key not in ("d_head", "normalization")}  # fmt: skip
    with pytest.raises(ValueError, match=r"lacks \['d_head', 'normalization_type'\]"):
        neel_config.neel_config_fields("NeelNanda/x", cfg_json)


def test_convert_neel_model_config_reads_config_json_from_the_hub_cache(tmp_path):
    repo = "NeelNanda/SoLU_1L512W_C4_Code"
    fake_hub_cache(tmp_path, repo, {"config.json": json.dumps(SOLU_CONFIG)})
    fields = lfp.convert_neel_model_config(repo, cache_dir=str(tmp_path), unrelated_option=1)
    assert fields == neel_config.neel_config_fields(repo, SOLU_CONFIG)
    assert fields["d_vocab"] == 48262


def test_convert_neel_model_config_offline_without_the_file_says_so(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(hub.CheckpointUnavailableError, match="config.json of 'NeelNanda/x'"):
        lfp.convert_neel_model_config("NeelNanda/x", cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="'not a repo id' is not an official model name"):
        lfp.convert_neel_model_config("not a repo id")


# ----- weight_conversions -----------------------------------------------------------------------
CLASSIC_FIRST_PARAMETER = {
    "gpt2": "gpt2", "neox": "neox", "llama": "llama", "mistral": "mistral", "qwen2": "qwen",
    "qwen3": "qwen", "phi3": "phi", "gemma": "gemma",
}  # fmt: skip


@pytest.mark.parametrize("family", sorted(CLASSIC_FIRST_PARAMETER))
def test_weight_conversion_modules_keep_classic_signatures(family):
    import importlib

    module = importlib.import_module(f"transformer_lens.pretrained.weight_conversions.{family}")
    convert = getattr(module, f"convert_{family}_weights")
    assert list(inspect.signature(convert).parameters) == [CLASSIC_FIRST_PARAMETER[family], "cfg"]
    package = importlib.import_module("transformer_lens.pretrained.weight_conversions")
    assert getattr(package, f"convert_{family}_weights") is convert


def test_gpt2_weight_conversion_equals_the_state_dict(hf_gpt2, gpt2_dir):
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights

    cfg = lfp.get_pretrained_model_config(gpt2_dir)
    converted = convert_gpt2_weights(gpt2=hf_gpt2, cfg=cfg)
    expected = lfp.get_pretrained_state_dict(gpt2_dir, cfg)
    assert sorted(converted) == sorted(expected)
    assert all(torch.equal(converted[key], expected[key]) for key in expected)
    with pytest.raises(ValueError, match="convert_neox_weights expects"):
        from transformer_lens.pretrained.weight_conversions.neox import convert_neox_weights

        convert_neox_weights(hf_gpt2, cfg)
