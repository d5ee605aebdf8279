"""transformer_lens.lit without lit-nlp: constants, the helpers of lit.utils on hand-made
tensors, the datasets' examples, and what needs lit-nlp failing with the extra to install."""

import logging
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from transformer_lens.lit import constants, utils
from transformer_lens.lit.dataset import (
    DatasetConfig,
    InductionDataset,
    IOIDataset,
    PromptCompletionDataset,
    SimpleTextDataset,
    wrap_for_lit,
)


class FakeTokenizer:
    """decode([i]) -> "t<i>": enough for get_top_k_predictions."""

    def decode(self, ids: list[int]) -> str:
        return "".join(f"t{i}" for i in ids)


# ----- constants --------------------------------------------------------------------------


def test_templates_format_into_hook_and_field_names():
    assert constants.HOOK_POINTS.ATTN_PATTERN_TEMPLATE.format(layer=3) == (
        "blocks.3.attn.hook_pattern"
    )
    assert constants.HOOK_POINTS.RESID_POST_TEMPLATE.format(layer=0) == "blocks.0.hook_resid_post"
    assert constants.OUTPUT_FIELDS.ATTENTION_TEMPLATE.format(layer=1, head=2) == (
        "layer_1/head_2/attention"
    )
    assert constants.OUTPUT_FIELDS.LAYER_EMB_TEMPLATE.format(layer=4) == "layer_4/embeddings"


def test_constants_keep_classic_values():
    assert constants.INPUT_FIELDS.TEXT == "text"
    assert (constants.DEFAULTS.MAX_SEQ_LENGTH, constants.DEFAULTS.TOP_K) == (512, 10)
    assert constants.DEFAULTS.BATCH_SIZE == 8 and constants.DEFAULTS.EMBEDDING_LAYERS is None
    assert constants.SERVER_CONFIG.DEFAULT_PORT == 5432
    assert constants.SERVER_CONFIG.DEFAULT_TITLE == "TransformerLens + LIT"
    assert constants.LIT_TYPE_MAPPING["attention"] == "AttentionHeads"
    assert constants.ERRORS.BATCH_SIZE_MISMATCH.format(expected=2, actual=3) == (
        "Batch size mismatch. Expected 2, got 3"
    )


def test_constants_are_frozen():
    with pytest.raises(AttributeError):
        constants.INPUT_FIELDS.TEXT = "prompt"  # type: ignore[misc]


# ----- tensors and tokens -----------------------------------------------------------------


def test_tensor_to_numpy_detaches_and_passes_arrays_and_none():
    tensor = torch.tensor([1.0, 2.0], requires_grad=True)
    assert np.array_equal(utils.tensor_to_numpy(tensor), np.array([1.0, 2.0], dtype=np.float32))
    array = np.zeros(3)
    assert utils.tensor_to_numpy(array) is array
    assert utils.tensor_to_numpy(None) is None


def test_tensor_to_numpy_turns_bfloat16_into_exact_float32():
    # 1.5 and -0.125 are exact in bfloat16; numpy has no bfloat16 dtype.
    result = utils.tensor_to_numpy(torch.tensor([1.5, -0.125], dtype=torch.bfloat16))
    assert result.dtype == np.float32 and result.tolist() == [1.5, -0.125]


def test_tensor_to_numpy_rejects_other_types():
    with pytest.raises(TypeError):
        utils.tensor_to_numpy([1.0, 2.0])  # type: ignore[arg-type]


def test_numpy_to_tensor_casts_and_passes_none():
    tensor = utils.numpy_to_tensor(np.array([1, 2]), device="cpu", dtype=torch.float64)
    assert tensor.dtype == torch.float64 and tensor.tolist() == [1.0, 2.0]
    assert utils.numpy_to_tensor(None) is None


@pytest.mark.parametrize(
    "raw, shown",
    [("Ġcat", "▁cat"), ("▁cat", "▁cat"), ("##ing", "ing"), ("cat", "cat"), ("Ġ", "▁")],
)
def test_clean_token_string(raw, shown):
    assert utils.clean_token_string(raw) == shown


def test_clean_token_strings_cleans_each():
    assert utils.clean_token_strings(["<bos>", "Ġthe", "##s"]) == ["<bos>", "▁the", "s"]


def test_top_k_predictions_are_softmax_probabilities_likeliest_first():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    logits = torch.zeros(2, 3, 4)
    logits[1, 2] = probs.log() + 5.0  # softmax ignores the shift
    top = utils.get_top_k_predictions(logits, FakeTokenizer(), k=2, position=2, batch_idx=1)
    assert [token for token, _ in top] == ["t3", "t2"]
    assert [prob for _, prob in top] == pytest.approx([0.4, 0.3])
    uniform = utils.get_top_k_predictions(logits, FakeTokenizer(), k=4)
    assert [prob for _, prob in uniform] == pytest.approx([0.25] * 4)


# ----- reading a cache --------------------------------------------------------------------


def _pattern_cache() -> dict[str, torch.Tensor]:
    # [batch=2, head_index=3, query_pos=2, key_pos=2], entries numbered so that each
    # slice can be written down by hand.
    pattern = torch.arange(24, dtype=torch.float32).reshape(2, 3, 2, 2)
    resid = torch.tensor([[[1.0, 2.0], [3.0, 6.0]], [[0.0, 0.0], [4.0, 8.0]]])
    return {"blocks.0.attn.hook_pattern": pattern, "blocks.0.hook_resid_post": resid}


def test_extract_attention_gives_all_heads_or_one():
    cache = _pattern_cache()
    all_heads = utils.extract_attention_from_cache(cache, 0, batch_idx=1)
    assert all_heads.shape == (3, 2, 2) and all_heads[0, 0, 0] == 12.0
    assert utils.extract_attention_from_cache(cache, 0, head=2).tolist() == [
        [8.0, 9.0],
        [10.0, 11.0],
    ]


def test_extract_attention_accepts_a_cache_without_batch_dim():
    cache = {"blocks.0.attn.hook_pattern": torch.ones(3, 2, 2)}
    assert utils.extract_attention_from_cache(cache, 0, head=1).shape == (2, 2)


def test_extract_attention_names_a_missing_layer():
    with pytest.raises(KeyError, match="blocks.5.attn.hook_pattern.*layer 5"):
        utils.extract_attention_from_cache(_pattern_cache(), 5)


def test_extract_attention_names_a_missing_head():
    with pytest.raises(IndexError, match="head 3 out of range: layer 0 has 3"):
        utils.extract_attention_from_cache(_pattern_cache(), 0, head=3)


@pytest.mark.parametrize(
    "position, expected",
    [
        ("first", [1.0, 2.0]),
        ("last", [3.0, 6.0]),
        ("mean", [2.0, 4.0]),
        ("all", [[1.0, 2.0], [3.0, 6.0]]),
    ],
)
def test_extract_embeddings_by_position(position, expected):
    assert utils.extract_embeddings_from_cache(_pattern_cache(), 0, position).tolist() == expected


def test_extract_embeddings_reads_the_requested_sequence():
    cache = _pattern_cache()
    assert utils.extract_embeddings_from_cache(cache, 0, "mean", batch_idx=1).tolist() == [2, 4]


def test_extract_embeddings_rejects_an_unknown_position():
    with pytest.raises(ValueError, match="position must be one of .*'middle'"):
        utils.extract_embeddings_from_cache(_pattern_cache(), 0, "middle")


def test_filter_cache_by_pattern_keeps_matching_names():
    assert list(utils.filter_cache_by_pattern(_pattern_cache(), "hook_pattern")) == [
        "blocks.0.attn.hook_pattern"
    ]


def test_get_hook_name_for_layer_fills_every_placeholder():
    name = utils.get_hook_name_for_layer("blocks.{layer}.attn.hook_{kind}", 3, kind="q")
    assert name == "blocks.3.attn.hook_q"


# ----- examples and batches ---------------------------------------------------------------


def test_validate_input_example_warns_about_the_missing_field(caplog):
    assert utils.validate_input_example({"text": "a", "label": 1}, ["text", "label"])
    with caplog.at_level(logging.WARNING, logger="transformer_lens.lit.utils"):
        assert not utils.validate_input_example({"label": 1}, ["text", "label"])
    assert "'text'" in caplog.text


def test_batch_examples_keeps_order_and_a_short_last_batch():
    examples = [{"i": i} for i in range(5)]
    batches = utils.batch_examples(examples, 2)
    assert [[ex["i"] for ex in batch] for batch in batches] == [[0, 1], [2, 3], [4]]
    assert utils.batch_examples([], 3) == []


@pytest.mark.parametrize("batch_size", [0, -1])
def test_batch_examples_rejects_a_size_below_one(batch_size):
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        utils.batch_examples([{"i": 0}], batch_size)


def test_unbatch_outputs_splits_arrays_and_lists_and_repeats_the_rest():
    outputs = utils.unbatch_outputs(
        {"a": np.array([[1, 2], [3, 4]]), "b": ["x", "y"], "t": torch.tensor([5, 6]), "c": 7}
    )
    assert len(outputs) == 2
    assert outputs[1]["a"].tolist() == [3, 4] and outputs[1]["b"] == "y"
    assert outputs[0]["t"].item() == 5 and outputs[0]["c"] == outputs[1]["c"] == 7
    assert utils.unbatch_outputs({}) == []


def test_unbatch_outputs_names_a_field_of_another_batch_size():
    with pytest.raises(ValueError, match="'b'.*Expected 2, got 3"):
        utils.unbatch_outputs({"a": np.zeros((2, 1)), "b": [1, 2, 3]})


def test_unbatch_outputs_needs_something_to_split():
    with pytest.raises(ValueError, match="at least one array"):
        utils.unbatch_outputs({"c": 7})


# ----- datasets ---------------------------------------------------------------------------


def test_simple_text_dataset_from_strings():
    dataset = SimpleTextDataset.from_strings(["a b", "c"], name="two")
    assert dataset.examples == [{"text": "a b"}, {"text": "c"}]
    assert len(dataset) == 2 and list(dataset) == dataset.examples
    assert dataset.description() == "two: 2 examples"


def test_simple_text_dataset_names_the_example_without_text():
    with pytest.raises(ValueError, match="Example 1 missing required field 'text'"):
        SimpleTextDataset([{"text": "ok"}, {"prompt": "no text"}])


def test_simple_text_dataset_from_file_skips_blank_lines(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("first\n\n  second  \nthird\n", encoding="utf-8")
    assert [ex["text"] for ex in SimpleTextDataset.from_file(path)] == [
        "first",
        "second",
        "third",
    ]
    two = SimpleTextDataset.from_file(path, max_examples=2)
    assert [ex["text"] for ex in two] == ["first", "second"]
    assert two.description() == "lines: 2 examples"


def test_prompt_completion_text_is_prompt_then_completion():
    given = [{"prompt": "2 + 2 =", "completion": " 4"}, {"prompt": "Hi"}]
    dataset = PromptCompletionDataset(given)
    assert [ex["text"] for ex in dataset] == ["2 + 2 = 4", "Hi"]
    assert dataset.examples[1]["completion"] == ""
    assert given[1] == {"prompt": "Hi"}, "the caller's examples must not be changed"
    assert dataset.description() == "PromptCompletionDataset: 2 prompt-completion pairs"


def test_prompt_completion_from_pairs_and_missing_prompt():
    dataset = PromptCompletionDataset.from_pairs([("The sky is", " blue")])
    assert dataset.examples[0]["text"] == "The sky is blue"
    with pytest.raises(ValueError, match="missing required field 'prompt'"):
        PromptCompletionDataset([{"completion": "x"}])


def test_ioi_add_example_fills_the_template():
    dataset = IOIDataset()
    dataset.add_example("Mary", "John", "store", "book")
    assert dataset.examples == [
        {
            "text": "When Mary and John went to the store, Mary gave a book to",
            "name1": "Mary",
            "name2": "John",
            "place": "store",
            "object": "book",
            "answer": "John",
        }
    ]


def test_ioi_generate_draws_as_classic_without_reseeding_global_random(monkeypatch):
    # (Not getstate(): the runtime type checker of the test run draws from global random.)
    with monkeypatch.context() as patched:
        patched.setattr(random, "seed", lambda *a: pytest.fail("reseeded global random"))
        dataset = IOIDataset.generate(n_examples=20, seed=7)
    # Classic's draws: random.seed(seed), then per example sample(NAMES, 2), choice(PLACES),
    # choice(OBJECTS).
    random.seed(7)
    for example in dataset:
        name1, name2 = random.sample(IOIDataset.NAMES, 2)
        place, obj = random.choice(IOIDataset.PLACES), random.choice(IOIDataset.OBJECTS)
        assert (example["name1"], example["name2"], example["place"], example["object"]) == (
            name1,
            name2,
            place,
            obj,
        )
        assert (
            example["text"]
            == f"When {name1} and {name2} went to the {place}, {name1} gave a {obj} to"
        )
        assert example["answer"] == name2 != name1
    assert dataset.description() == "IOI Dataset: 20 IOI examples"


def test_induction_add_example_ends_where_the_pattern_restarts():
    dataset = InductionDataset()
    dataset.add_example("red fox runs", "and then", completion="fox runs")
    assert dataset.examples == [
        {
            "text": "red fox runs and then red",
            "pattern": "red fox runs",
            "expected_completion": "fox runs",
        }
    ]


def test_induction_generate_simple_expects_the_rest_of_the_pattern():
    dataset = InductionDataset.generate_simple(n_examples=9, seed=3)
    connectors = ["Then, later,", "After that,", "Subsequently,", "Next,"]
    rng = random.Random(3)
    first, ninth = dataset.examples[0], dataset.examples[8]
    assert first["pattern"] == ninth["pattern"] == "The cat sat on the mat"
    assert first["text"] == f"The cat sat on the mat {rng.choice(connectors)} The"
    assert first["expected_completion"] == "cat sat on the mat"
    for example in dataset:
        assert example["text"].startswith(example["pattern"] + " ")
        last_word = example["text"].rsplit(" ", 1)[1]
        assert f"{last_word} {example['expected_completion']}" == example["pattern"]
    assert len(dataset) == 9


def test_dataset_config_defaults():
    assert DatasetConfig() == DatasetConfig(max_examples=None, shuffle=False, seed=42)


# ----- without lit-nlp --------------------------------------------------------------------


@pytest.fixture
def no_lit_nlp(monkeypatch):
    """lit-nlp made unimportable, whether or not it is installed here."""
    for name in [m for m in sys.modules if m == "lit_nlp" or m.startswith("lit_nlp.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "lit_nlp", None)


def test_what_needs_lit_nlp_says_to_install_the_lit_extra(no_lit_nlp):
    from transformer_lens.lit import LITWidget, serve

    assert not utils.check_lit_installed()
    dataset = SimpleTextDataset.from_strings(["a"])
    calls = [dataset.spec, lambda: wrap_for_lit(dataset), lambda: serve({}, dataset)]
    calls.append(lambda: LITWidget({}, {"d": dataset}))
    for call in calls:
        with pytest.raises(ImportError, match=r'pip install "transformer-lens\[lit\]"'):
            call()


def test_import_transformer_lens_does_not_load_lit():
    code = (
        "import sys, transformer_lens; "
        "loaded = [m for m in sys.modules if m.startswith(('lit_nlp', 'transformer_lens.lit'))]; "
        "assert not loaded, loaded; "
        "assert transformer_lens.lit.HookedTransformerLIT is not None"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_import_transformer_lens_lit_works_without_lit_nlp():
    code = (
        "import sys; sys.modules['lit_nlp'] = None; "
        "import transformer_lens.lit as lit; "
        "assert not lit.check_lit_installed(); "
        "assert lit.HookedTransformerLIT.__bases__ == (object,)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_every_public_name_of_the_lit_package_has_a_docstring():
    import importlib
    import inspect

    missing = []
    for module_name in ("", ".constants", ".dataset", ".model", ".utils"):
        module = importlib.import_module(f"transformer_lens.lit{module_name}")
        assert module.__doc__, module.__name__
        for name, obj in vars(module).items():
            if name.startswith("_") or not getattr(obj, "__module__", "").startswith(
                "transformer_lens.lit"
            ):
                continue
            if not inspect.getdoc(obj):
                missing.append(f"{module.__name__}.{name}")
            members = vars(obj).items() if inspect.isclass(obj) else ()
            for member, attr in members:
                func = attr.fget if isinstance(attr, property) else getattr(attr, "__func__", attr)
                if not member.startswith("_") and inspect.isfunction(func) and not func.__doc__:
                    missing.append(f"{module.__name__}.{name}.{member}")
    assert missing == []
