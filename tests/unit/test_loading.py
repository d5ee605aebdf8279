"""Loading pretrained models (API.md §9) from official names, in-memory HF models and local
checkpoint directories, on tiny random Gemma models. Nothing here may touch the network."""

import copy
import json
import warnings

import pytest
import torch

from tests.helpers import assert_close, pretrained_loader, tiny_gemma_config
from transformer_lens import HookedTransformer, loading_from_pretrained, weight_processing
from transformer_lens.pretrained.registry import ADAPTERS
from transformer_lens.pretrained.streaming import float32_buffers, pieces
from transformer_lens.pretrained.weight_conversions import convert_gemma_weights

TOKENS = torch.tensor([[2, 5, 17, 99, 3, 42, 7], [2, 64, 1, 0, 33, 8, 100]])

# Expected whenever a tiny model is loaded under an official name, or without a tokenizer.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Could not load a tokenizer:UserWarning",
    "ignore:hf_model's config differs:UserWarning",
    "ignore:center_writing_weights skipped:UserWarning",
)


@pytest.fixture(autouse=True)
def _offline(no_network):
    """Every test here runs with sockets refused (the conftest fixture)."""


@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():
        yield


@pytest.fixture
def hf_gemma(tiny_gemma_factory):
    """The session's tiny random GemmaForCausalLM (8 query heads, 1 kv head). Shared: copy
    before changing it."""
    return tiny_gemma_factory(1)


@pytest.fixture
def checkpoint_dir(hf_gemma, tmp_path):
    path = tmp_path / "tiny-gemma"
    hf_gemma.save_pretrained(path)
    return path


def hf_log_probs(hf_model, tokens: torch.Tensor) -> torch.Tensor:
    return hf_model(tokens).logits.log_softmax(dim=-1)


# ----- names ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, official",
    [
        ("gemma-2b", "google/gemma-2b"),
        ("GEMMA-2B", "google/gemma-2b"),
        ("google/gemma-7b-it", "google/gemma-7b-it"),
        ("Google/Gemma-7B-IT", "google/gemma-7b-it"),
        ("gemma-2b-it", "google/gemma-2b-it"),
    ],
)
def test_official_model_names_resolve_case_insensitively(name, official):
    assert loading_from_pretrained.get_official_model_name(name) == official


def test_official_names_and_aliases_tables_agree():
    names = loading_from_pretrained.OFFICIAL_MODEL_NAMES
    assert "google/gemma-2b" in names
    assert "gemma-2b" in loading_from_pretrained.MODEL_ALIASES["google/gemma-2b"]
    assert len(loading_from_pretrained.DEFAULT_MODEL_ALIASES) == len(names)


def test_unknown_model_name_raises_naming_it():
    with pytest.raises(ValueError, match="'gemma-3b'"):
        loading_from_pretrained.get_official_model_name("gemma-3b")


# ----- configs of official models, with no network ---------------------------------------------
def test_gemma_2b_config_has_the_official_facts():
    cfg = loading_from_pretrained.get_pretrained_model_config("google/gemma-2b")
    facts = dict(
        n_layers=18,
        d_model=2048,
        n_heads=8,
        n_key_value_heads=1,
        d_head=256,
        d_mlp=16384,
        d_vocab=256000,
        d_vocab_out=256000,
        n_ctx=8192,
        eps=1e-6,
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_dim=256,
        rotary_base=10000.0,
        gated_mlp=True,
        final_rms=True,
        attn_scale=16.0,
        original_architecture="GemmaForCausalLM",
        model_name="gemma-2b",
        tokenizer_name="google/gemma-2b",
        init_weights=False,
        dtype=torch.float32,
    )
    assert {field: getattr(cfg, field) for field in facts} == facts


def test_gemma_7b_config_is_multi_head_with_wide_heads():
    cfg = loading_from_pretrained.get_pretrained_model_config("gemma-7b")
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_key_value_heads) == (28, 3072, 16, 16)
    assert cfg.n_heads * cfg.d_head != cfg.d_model
    assert cfg.tokenizer_name == "google/gemma-7b"


def test_config_overrides_first_n_layers_n_ctx_dtype_and_fold_ln():
    cfg = loading_from_pretrained.get_pretrained_model_config(
        "gemma-2b", first_n_layers=2, n_ctx=128, dtype="bfloat16", fold_ln=True
    )
    assert (cfg.n_layers, cfg.n_ctx, cfg.dtype) == (2, 128, torch.bfloat16)
    assert cfg.normalization_type == "RMSPre"
    assert cfg.d_model == 2048


def test_config_n_ctx_larger_than_the_model_warns():
    with pytest.warns(UserWarning, match="n_ctx=16384 is larger than the model's 8192"):
        cfg = loading_from_pretrained.get_pretrained_model_config("gemma-2b", n_ctx=16384)
    assert cfg.n_ctx == 16384


@pytest.mark.parametrize("first_n_layers", [0, 19])
def test_config_first_n_layers_out_of_range_raises(first_n_layers):
    with pytest.raises(ValueError, match=f"first_n_layers.*{first_n_layers}"):
        loading_from_pretrained.get_pretrained_model_config(
            "gemma-2b", first_n_layers=first_n_layers
        )


# ----- from an in-memory HF model ---------------------------------------------------------------
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


# ----- from a checkpoint directory ---------------------------------------------------------------
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


# ----- HF configs the adapter cannot honour -----------------------------------------------------
def gemma_with(**overrides):
    from transformers import GemmaForCausalLM

    torch.manual_seed(0)
    return GemmaForCausalLM(tiny_gemma_config(**overrides)).eval()


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
    config = tiny_gemma_config()
    config.my_new_feature = 3
    from transformers import GemmaForCausalLM

    hf_model = GemmaForCausalLM(config)
    with pytest.raises(ValueError, match="my_new_feature"):
        HookedTransformer.from_pretrained("tiny-gemma", hf_model=hf_model)


def test_unknown_field_in_a_saved_config_json_raises_naming_it(checkpoint_dir):
    config_path = checkpoint_dir / "config.json"
    fields = json.loads(config_path.read_text())
    fields["my_new_feature"] = 3
    config_path.write_text(json.dumps(fields))
    with pytest.raises(ValueError, match="my_new_feature"):
        HookedTransformer.from_pretrained(str(checkpoint_dir))


def tiny_opt():
    from transformers import OPTConfig, OPTForCausalLM

    config = OPTConfig(
        num_hidden_layers=1,
        hidden_size=16,
        num_attention_heads=2,
        ffn_dim=32,
        vocab_size=50,
        max_position_embeddings=16,
        word_embed_proj_dim=16,
    )
    return OPTForCausalLM(config)


def test_unsupported_architecture_raises_naming_it():
    assert "OPTForCausalLM" not in ADAPTERS  # pick another unsupported model if OPT lands
    with pytest.raises(ValueError, match="Unsupported architecture.*OPTForCausalLM"):
        HookedTransformer.from_pretrained("tiny-model", hf_model=tiny_opt())


def test_t5_is_refused():
    with pytest.raises(RuntimeError, match="encoder-decoder"):
        HookedTransformer.from_pretrained("t5-small")


# ----- dtypes and refused options --------------------------------------------------------------
def param_dtypes(model: HookedTransformer) -> set[torch.dtype]:
    return {param.dtype for param in model.parameters()}


def split_dtypes(model: HookedTransformer) -> tuple[set[torch.dtype], set[torch.dtype]]:
    """(dtypes of the weight matrices and biases, dtypes of the RMSNorm weights). RMSNorm
    weights stay float32 by design: Gemma's 1 + w would be rounded in bfloat16."""
    norms = {p.dtype for name, p in model.named_parameters() if name.endswith(".w")}
    others = {p.dtype for name, p in model.named_parameters() if not name.endswith(".w")}
    return others, norms


def test_no_processing_dtype_string_gives_bfloat16_parameters(hf_gemma):
    model = HookedTransformer.from_pretrained_no_processing(
        "google/gemma-2b", hf_model=hf_gemma, dtype="bfloat16"
    )
    assert split_dtypes(model) == ({torch.bfloat16}, {torch.float32})
    assert model.cfg.dtype is torch.bfloat16
    assert model(TOKENS).dtype == torch.bfloat16


def test_no_processing_torch_dtype_kwarg_overrides_dtype(hf_gemma):
    model = HookedTransformer.from_pretrained_no_processing(
        "google/gemma-2b", hf_model=hf_gemma, dtype="bfloat16", torch_dtype=torch.float16
    )
    assert split_dtypes(model) == ({torch.float16}, {torch.float32})
    assert model.cfg.dtype is torch.float16


def test_dtype_string_gives_bfloat16_parameters(hf_gemma):
    model = HookedTransformer.from_pretrained(
        "google/gemma-2b", hf_model=hf_gemma, dtype="bfloat16"
    )
    assert param_dtypes(model) == {torch.bfloat16}
    assert model.cfg.dtype is torch.bfloat16


def test_torch_dtype_kwarg_overrides_dtype(hf_gemma):
    model = HookedTransformer.from_pretrained(
        "google/gemma-2b", hf_model=hf_gemma, dtype="bfloat16", torch_dtype=torch.float16
    )
    assert param_dtypes(model) == {torch.float16}


def test_bfloat16_hf_model_loads_into_the_default_float32(hf_gemma):
    model = HookedTransformer.from_pretrained(
        "google/gemma-2b", hf_model=copy.deepcopy(hf_gemma).to(torch.bfloat16)
    )
    assert param_dtypes(model) == {torch.float32}


def test_float32_checkpoint_directory_loads_as_bfloat16(checkpoint_dir):
    model = HookedTransformer.from_pretrained(str(checkpoint_dir), dtype="bfloat16")
    assert param_dtypes(model) == {torch.bfloat16}


@pytest.mark.parametrize(
    "option",
    [dict(load_in_8bit=True), dict(load_in_4bit=True), dict(quantization_config={"bits": 8})],
)
def test_quantised_loading_is_refused(hf_gemma, option):
    with pytest.raises(ValueError, match="Quantised loading is not supported"):
        HookedTransformer.from_pretrained("google/gemma-2b", hf_model=hf_gemma, **option)


# ----- the classic conversion function ----------------------------------------------------------
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


# ----- tokenizer -----------------------------------------------------------------------------
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


def test_official_name_loads_from_the_local_hub_cache_with_its_own_config(tmp_path):
    """An official name finds its snapshot in the Hugging Face cache with no network, and
    the snapshot's config.json (here: a 2-layer tiny model) describes the weights, not the
    shipped table (18 layers)."""
    from transformers import GemmaForCausalLM

    snapshot = tmp_path / "models--google--gemma-2b" / "snapshots" / "0123abcd"
    torch.manual_seed(0)
    hf = GemmaForCausalLM(tiny_gemma_config()).eval()
    hf.save_pretrained(snapshot)
    (tmp_path / "models--google--gemma-2b" / "refs").mkdir()
    (tmp_path / "models--google--gemma-2b" / "refs" / "main").write_text("0123abcd")
    with pytest.warns(UserWarning):  # no tokenizer files in the snapshot
        model = HookedTransformer.from_pretrained_no_processing("gemma-2b", cache_dir=str(tmp_path))
    assert model.cfg.n_layers == 2 and model.cfg.d_model == 64
    tokens = torch.randint(0, 101, (1, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert_close(model(tokens), hf(tokens).logits, 1e-5, "logits from the cached snapshot")


def mapped_keys(monkeypatch) -> list[str]:
    """Record the HF keys whose parameters the loader makes views of the mapped file."""
    keys: list[str] = []
    original = pieces._StreamingLoader.read_in_place

    def recording(self, weight):
        mapped = original(self, weight)
        if mapped:
            keys.append(weight.hf_key)
        return mapped

    monkeypatch.setattr(pieces._StreamingLoader, "read_in_place", recording)
    return keys


def test_unprocessed_load_maps_view_weights_from_the_file(checkpoint_dir, hf_gemma, monkeypatch):
    """Weights whose transform only views them (projections, MLP, W_U: the transposed tied
    embedding) become copy-on-write views of the checkpoint file, as HF's loader makes
    them; Gemma's scaled W_E and 1 + w norms need arithmetic and are copied. Either way
    the logits are HF's, and the parameters keep the layout the matmuls use."""
    keys = mapped_keys(monkeypatch)
    model = HookedTransformer.from_pretrained_no_processing(str(checkpoint_dir))
    projections = {
        f"model.layers.{i}.{name}.weight"
        for i in range(2)
        for name in (
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        )
    }
    assert projections <= set(keys)
    assert keys.count("model.embed_tokens.weight") == 1  # for W_U only
    assert not any("norm" in key for key in keys)
    assert_layouts_feed_the_matmuls(model)
    assert_close(model(TOKENS), hf_gemma(TOKENS).logits, 1e-5, "logits from mapped weights")


def assert_layouts_feed_the_matmuls(model) -> None:
    """Every parameter has the layout of a fresh model's (no copy per forward), except
    W_U, which may also keep HF's transposed layout (F.linear reads both in place)."""
    from transformer_lens.components.unembed import Unembed

    fresh = HookedTransformer(model.cfg)
    for name, parameter in model.named_parameters():
        if name == "unembed.W_U":
            assert Unembed.accepts_layout(parameter)
        else:
            assert parameter.stride() == fresh.get_parameter(name).stride(), name


def test_editing_a_mapped_weight_leaves_the_checkpoint_alone(checkpoint_dir, hf_gemma):
    """Interpretability edits weights in place (ablations): the mapping is copy-on-write."""
    file = checkpoint_dir / "model.safetensors"
    before = file.read_bytes()
    model = HookedTransformer.from_pretrained_no_processing(str(checkpoint_dir))
    model.blocks[0].attn.W_O.zero_()
    assert file.read_bytes() == before
    again = HookedTransformer.from_pretrained_no_processing(str(checkpoint_dir))
    assert_close(again(TOKENS), hf_gemma(TOKENS).logits, 1e-5, "a second load")
    assert not torch.equal(model(TOKENS), again(TOKENS))


def output_projection_keys(n_layers: int) -> list[str]:
    names = ("self_attn.o_proj.weight", "mlp.down_proj.weight")
    return sorted(f"model.layers.{i}.{name}" for i in range(n_layers) for name in names)


def test_processed_load_maps_what_processing_leaves_unchanged(
    checkpoint_dir, hf_gemma, monkeypatch
):
    """fold_ln rewrites the weights that read a norm (Q, K, V, the MLP's gate and input,
    W_U): they are copied. Gemma's output projections (W_O, W_out) come out of processing
    as they went in and stay views of the file, as without processing."""
    keys = mapped_keys(monkeypatch)
    processed = HookedTransformer.from_pretrained(str(checkpoint_dir))
    assert sorted(keys) == output_projection_keys(processed.cfg.n_layers)
    logprobs = processed(TOKENS).log_softmax(-1)
    assert_close(logprobs, hf_gemma(TOKENS).logits.log_softmax(-1), 1e-5, "processed log-probs")
    assert_layouts_feed_the_matmuls(processed)


def test_processed_bfloat16_load_maps_a_bfloat16_checkpoint(hf_gemma, tmp_path, monkeypatch):
    """Processing runs in float32, so everything it reads is converted, and only that: what
    it leaves unchanged is never converted, stays mapped from a bfloat16 file instead of
    being rounded back and copied, and equals the weights of a load that copies everything."""
    path = tmp_path / "tiny-gemma-bf16"
    copy.deepcopy(hf_gemma).to(torch.bfloat16).save_pretrained(path)
    keys = mapped_keys(monkeypatch)
    converted: list[int] = []
    float32 = float32_buffers.Float32Buffers.float32

    def recording(self, tensor):
        converted.append(tensor.data_ptr())
        return float32(self, tensor)

    monkeypatch.setattr(float32_buffers.Float32Buffers, "float32", recording)
    mapped = HookedTransformer.from_pretrained(str(path), dtype=torch.bfloat16)
    assert sorted(keys) == output_projection_keys(mapped.cfg.n_layers)
    projections = [b.attn.W_O.data_ptr() for b in mapped.blocks]
    projections += [b.mlp.W_out.data_ptr() for b in mapped.blocks]
    assert converted and not set(converted) & set(projections)
    monkeypatch.setattr(pieces._StreamingLoader, "read_in_place", lambda self, weight: False)
    copied = HookedTransformer.from_pretrained(str(path), dtype=torch.bfloat16).state_dict()
    for key, value in mapped.state_dict().items():
        assert value.dtype == copied[key].dtype and torch.equal(value, copied[key]), key


def test_cast_load_copies_every_weight(checkpoint_dir, monkeypatch):
    """A dtype change needs a cast: nothing is mapped."""
    keys = mapped_keys(monkeypatch)
    HookedTransformer.from_pretrained_no_processing(str(checkpoint_dir), dtype=torch.bfloat16)
    assert keys == []


@pytest.mark.parametrize("processed", [True, False], ids=["processed", "unprocessed"])
def test_weights_from_hf_model_share_no_memory_with_it(hf_gemma, processed):
    """Tensors of an in-memory HF model belong to it: they are copied, never adopted."""
    load = pretrained_loader(processed)
    model = load("google/gemma-2b", hf_model=hf_gemma)
    theirs = {p.untyped_storage().data_ptr() for p in hf_gemma.parameters()}
    shared = [n for n, p in model.named_parameters() if p.untyped_storage().data_ptr() in theirs]
    assert shared == []


def test_verify_s_shared_load_aliases_the_hf_model_s_matrices(hf_gemma):
    """share_hf_tensors (verify's option): every weight the model takes as it is, in the
    same layout, is the HF tensor itself; what the transform changes (Gemma's scaled W_E,
    its 1 + w norms) is computed; and the forward is HF's, bit for bit (W_U keeps HF's
    layout, so the unembedding runs HF's very matmul)."""
    copied = HookedTransformer.from_pretrained_no_processing("google/gemma-2b", hf_model=hf_gemma)
    shared = HookedTransformer.from_pretrained_no_processing(
        "google/gemma-2b", hf_model=hf_gemma, share_hf_tensors=True
    )
    theirs = {p.untyped_storage().data_ptr() for p in hf_gemma.parameters()}
    aliased = {n for n, p in shared.named_parameters() if p.untyped_storage().data_ptr() in theirs}
    matrices = {n for n, _ in shared.named_parameters() if ".W_" in n or "._W_" in n}
    matrices.remove("embed.W_E")  # scaled: a new tensor
    assert matrices and aliased == matrices
    assert_layouts_feed_the_matmuls(shared)
    tokens = torch.arange(10)[None] % shared.cfg.d_vocab
    assert torch.equal(shared(tokens), hf_gemma(tokens).logits)
    # A copying load stores W_U row-major (faster on CPU in float32): within rounding.
    torch.testing.assert_close(copied(tokens), shared(tokens), atol=1e-5, rtol=0)


@pytest.mark.parametrize("processed", [True, False], ids=["processed", "unprocessed"])
def test_parameters_loaded_from_a_directory_own_distinct_memory(checkpoint_dir, processed):
    """Adopting processed tensors (or mapping the file) never makes two parameters alias."""
    load = pretrained_loader(processed)
    model = load(str(checkpoint_dir))
    pointers = [p.untyped_storage().data_ptr() for p in model.parameters()]
    assert len(pointers) == len(set(pointers))
    assert_layouts_feed_the_matmuls(model)


@pytest.mark.parametrize(
    ("family", "dtype"),
    [("gemma", torch.bfloat16), ("gpt2", torch.float16)],
    ids=["gemma-bfloat16", "gpt2-float16"],
)
def test_half_precision_processing_reuses_float32_buffers_with_the_same_bits(
    family, dtype, tmp_path, monkeypatch
):
    """Each layer's float32 copies, and the matrices the fold writes, are made in the
    previous layer's buffers. The weights equal a load that makes fresh ones, bit for bit,
    and no parameter keeps a buffer's memory (GPT-2: centring the writes reads W_O and
    W_out too)."""
    from tests.unit.pretrained.streaming.test_vocab_blocks import gemma_checkpoint, gpt2_checkpoint

    make = gemma_checkpoint if family == "gemma" else gpt2_checkpoint
    path = make(tmp_path / "checkpoint")
    # (piece, buffer) of every buffer handed out; holding them keeps a freed buffer's address
    # from being handed out again, so that a shared address means a reused buffer
    handed_out: list[tuple[int, torch.Tensor]] = []
    fold_results: list[torch.Tensor] = []
    empty_like = float32_buffers.Float32Buffers.empty_like
    pieces = float32_buffers.Float32Buffers.next_piece
    folded_weights_in = weight_processing.folded_weights_in

    def counted_next_piece(self):
        self.piece = getattr(self, "piece", -1) + 1
        pieces(self)

    def counted(self, tensor, dtype):
        buffer = empty_like(self, tensor, dtype)
        handed_out.append((self.piece, buffer))
        return buffer

    def recording_results(allocate):
        def allocate_and_record(like, dtype):
            fold_results.append(allocate(like, dtype))
            return fold_results[-1]

        return folded_weights_in(allocate_and_record)

    with monkeypatch.context() as patch, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny configs differ from official; no tokenizer
        patch.setattr(float32_buffers.Float32Buffers, "next_piece", counted_next_piece)
        patch.setattr(float32_buffers.Float32Buffers, "empty_like", counted)
        patch.setattr(weight_processing, "folded_weights_in", recording_results)
        reused = HookedTransformer.from_pretrained(str(path), dtype=dtype)
        patch.setattr(weight_processing, "folded_weights_in", folded_weights_in)
        patch.setattr(
            float32_buffers.Float32Buffers,
            "empty_like",
            lambda self, tensor, dtype: torch.empty_like(tensor, dtype=dtype),
        )
        fresh = HookedTransformer.from_pretrained(str(path), dtype=dtype).state_dict()
    pieces_by_storage: dict[int, set[int]] = {}
    for piece, buffer in handed_out:
        pieces_by_storage.setdefault(buffer.untyped_storage().data_ptr(), set()).add(piece)
    reused_storages = {ptr for ptr, seen in pieces_by_storage.items() if len(seen) > 1}
    assert reused_storages, "no buffer was reused"
    result_storages = {t.untyped_storage().data_ptr() for t in fold_results}
    assert result_storages & reused_storages, "no fold result was written into a reused buffer"
    assert result_storages <= set(pieces_by_storage)
    parameters = {p.untyped_storage().data_ptr() for p in reused.parameters()}
    assert not parameters & set(pieces_by_storage)
    for key, value in reused.state_dict().items():
        assert value.dtype == fresh[key].dtype and torch.equal(value, fresh[key]), key


def test_processed_half_precision_load_imports_no_symbolic_shapes(tmp_path):
    """Asking torch for a layout on the meta device imports its symbolic-shape machinery and
    sympy, 0.4 s: more than a whole Gemma-2b layer takes to load. A fresh process loading
    a bfloat16 checkpoint with processing must not pull them in."""
    import subprocess
    import sys

    from tests.unit.pretrained.streaming.test_vocab_blocks import gemma_checkpoint

    path = gemma_checkpoint(tmp_path / "checkpoint")
    code = (
        "import sys, warnings, torch\n"
        "warnings.simplefilter('ignore')\n"
        "from transformer_lens import HookedTransformer\n"
        f"HookedTransformer.from_pretrained({str(path)!r}, dtype=torch.bfloat16)\n"
        "print(sorted(m for m in ('sympy', 'torch.fx.experimental.symbolic_shapes')"
        " if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    ("family", "checkpoint_dtype"),
    [("gemma", torch.bfloat16), ("gpt2", torch.float16)],
    ids=["gemma-bfloat16", "gpt2-float16"],
)
def test_half_precision_checkpoint_widened_to_float32_keeps_views_and_the_same_bits(
    family, checkpoint_dtype, tmp_path, monkeypatch
):
    """A half-precision checkpoint processed into float32 parameters hands processing its
    view-only weights unconverted (processing converts what it uses, the copy into the
    parameter the rest), with the bits of converting every weight first."""
    from transformers import AutoModelForCausalLM

    from tests.unit.pretrained.streaming.test_vocab_blocks import gemma_checkpoint, gpt2_checkpoint

    make = gemma_checkpoint if family == "gemma" else gpt2_checkpoint
    float32_path = make(tmp_path / "float32")
    path = tmp_path / "half"
    AutoModelForCausalLM.from_pretrained(float32_path, dtype=checkpoint_dtype).save_pretrained(path)
    handed: dict[str, torch.dtype] = {}
    buffers: list[torch.Tensor] = []  # held, so that no address is handed out twice
    load_for_processing = pieces._StreamingLoader.load_for_processing
    empty_like = float32_buffers.Float32Buffers.empty_like

    def recording(self, weight):
        tensor = load_for_processing(self, weight)
        handed[weight.key] = tensor.dtype
        return tensor

    def recorded_buffer(self, tensor, dtype):
        buffers.append(empty_like(self, tensor, dtype))
        return buffers[-1]

    with monkeypatch.context() as patch, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny configs differ from official; no tokenizer
        patch.setattr(pieces._StreamingLoader, "load_for_processing", recording)
        patch.setattr(float32_buffers.Float32Buffers, "empty_like", recorded_buffer)
        widened = HookedTransformer.from_pretrained(str(path), dtype=torch.float32)
        patch.setattr(float32_buffers.Float32Buffers, "empty_like", empty_like)
        patch.setattr(
            pieces._StreamingLoader,
            "load_for_processing",
            lambda self, weight: weight.load(self.cfg, self.source.get),
        )
        converted_first = HookedTransformer.from_pretrained(str(path), dtype=torch.float32)
    assert handed["blocks.0.mlp.W_in"] == checkpoint_dtype
    assert handed["blocks.1.mlp.W_out"] == checkpoint_dtype
    # processing's float32 copies were made in reused buffers, and none became a parameter
    buffer_storages = {b.untyped_storage().data_ptr() for b in buffers}
    assert buffer_storages
    assert not buffer_storages & {p.untyped_storage().data_ptr() for p in widened.parameters()}
    expected = converted_first.state_dict()
    for key, value in widened.state_dict().items():
        assert value.dtype == expected[key].dtype and torch.equal(value, expected[key]), key
