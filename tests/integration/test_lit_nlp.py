"""transformer_lens.lit with lit-nlp installed: the wrappers are LIT models and datasets
whose specs LIT's own validators accept for their outputs, a LitApp serves predictions and
gradient salience from them, and serve/LITWidget hand LIT the right objects. Skipped where
lit-nlp is not installed (it is an optional, heavy dependency: the `lit` extra)."""

import os
import tempfile

import numpy as np
import pytest
import torch

pytest.importorskip("lit_nlp")

from lit_nlp import app as lit_app  # noqa: E402
from lit_nlp import dev_server, notebook  # noqa: E402
from lit_nlp.api import dataset as lit_dataset  # noqa: E402
from lit_nlp.api import layout as lit_layout  # noqa: E402
from lit_nlp.api import model as lit_model  # noqa: E402
from lit_nlp.api import types as lit_types  # noqa: E402
from lit_nlp.lib import validation  # noqa: E402

from tests.tokenizers import load_tokenizer, save_tokenizers  # noqa: E402
from transformer_lens import HookedTransformer, HookedTransformerConfig  # noqa: E402
from transformer_lens.lit import (  # noqa: E402
    HookedTransformerLIT,
    HookedTransformerLITBatched,
    HookedTransformerLITConfig,
    InductionDataset,
    IOIDataset,
    LITWidget,
    PromptCompletionDataset,
    SimpleTextDataset,
    check_lit_installed,
    serve,
    wrap_for_lit,
)
from transformer_lens.lit.utils import compute_token_gradients  # noqa: E402

# A grouped-query rotary model: 4 query heads share 2 key/value heads.
GROUPED = dict(
    n_layers=2, d_model=32, n_ctx=64, d_head=8, n_heads=4, n_key_value_heads=2, d_vocab=400,
    act_fn="silu", normalization_type="RMS", positional_embedding_type="rotary", seed=0,
)  # fmt: skip


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> HookedTransformer:
    dirs = save_tokenizers(tmp_path_factory.mktemp("tokenizers"))
    cfg = HookedTransformerConfig(**GROUPED)
    return HookedTransformer(cfg, tokenizer=load_tokenizer(dirs["plain"]))


def datasets() -> dict[str, lit_dataset.Dataset]:
    return {
        "texts": SimpleTextDataset.from_strings(["the cat sat on the mat", "hello world"]),
        "pairs": PromptCompletionDataset.from_pairs([("the cat", " sat"), ("hello", "")]),
        "ioi": IOIDataset.generate(n_examples=3),
        "induction": InductionDataset.generate_simple(n_examples=3),
    }


def test_lit_is_installed_and_our_classes_are_lit_classes(model):
    assert check_lit_installed()
    assert isinstance(HookedTransformerLIT(model), lit_model.Model)
    assert isinstance(HookedTransformerLITBatched(model), lit_model.BatchedModel)
    for dataset in datasets().values():
        assert isinstance(dataset, lit_dataset.Dataset)
        assert type(dataset).init_spec() is None


def test_input_spec_is_text_with_optional_salience_fields(model):
    spec = HookedTransformerLIT(model).input_spec()
    assert isinstance(spec["text"], lit_types.TextSegment) and spec["text"].required
    assert isinstance(spec["tokens"], lit_types.Tokens) and spec["tokens"].parent == "text"
    assert isinstance(spec["token_embeddings"], lit_types.TokenEmbeddings)
    assert isinstance(spec["target_mask"], lit_types.Tokens)
    assert not any(spec[f].required for f in ("tokens", "token_embeddings", "target_mask"))
    plain = HookedTransformerLITConfig(compute_gradients=False, output_embeddings=False)
    assert set(HookedTransformerLIT(model, plain).input_spec()) == {"text", "tokens"}


def test_output_spec_types_and_alignment(model):
    spec = HookedTransformerLIT(model).output_spec()
    expected_types = {
        "tokens": lit_types.Tokens,
        "top_k_tokens": lit_types.TokenTopKPreds,
        "input_embeddings": lit_types.TokenEmbeddings,
        "cls_embedding": lit_types.Embeddings,
        "mean_embedding": lit_types.Embeddings,
        "layer_0/embeddings": lit_types.Embeddings,
        "layer_1/embeddings": lit_types.Embeddings,
        "layer_0/attention": lit_types.AttentionHeads,
        "layer_1/attention": lit_types.AttentionHeads,
        "grad_l2": lit_types.TokenGradients,
        "grad_dot_input": lit_types.TokenGradients,
    }
    assert {name: type(field) for name, field in spec.items()} == expected_types
    assert spec["layer_1/attention"].align_in == spec["layer_1/attention"].align_out == "tokens"
    assert spec["grad_l2"].align == "tokens" and spec["grad_l2"].grad_for == "input_embeddings"


@pytest.mark.parametrize(
    "config",
    [
        {},
        dict(compute_gradients=False),
        dict(compute_gradients=False, output_embeddings=False, output_attention=False),
        dict(embedding_layers=[1], top_k=3),
    ],
)
def test_predict_writes_exactly_the_output_spec(model, config):
    wrapper = HookedTransformerLIT(model, HookedTransformerLITConfig(**config))
    (output,) = wrapper.predict([{"text": "the cat sat"}])
    assert set(output) == set(wrapper.output_spec())


def test_init_spec_lists_what_the_ui_asks_for():
    spec = HookedTransformerLIT.init_spec()
    assert isinstance(spec["model_name"], lit_types.String) and spec["model_name"].required
    assert isinstance(spec["max_seq_length"], lit_types.Integer)
    assert spec["max_seq_length"].default == 512
    assert {"compute_gradients", "output_attention", "output_embeddings"} < set(spec)
    assert HookedTransformerLITBatched.init_spec().keys() == spec.keys()


@pytest.mark.parametrize("name", list(datasets()))
def test_lit_validators_accept_datasets_and_predictions(model, name):
    dataset = datasets()[name]
    validation.validate_dataset(dataset, enforce_all_fields_required=True)
    for wrapper in (HookedTransformerLIT(model), HookedTransformerLITBatched(model)):
        assert wrapper.is_compatible_with_dataset(dataset)
        validation.validate_model(wrapper, dataset)


def test_dataset_specs_give_each_field_its_lit_type():
    ioi = IOIDataset.generate(n_examples=1).spec()
    assert isinstance(ioi["text"], lit_types.TextSegment)
    for field in ("name1", "name2", "place", "object", "answer"):
        assert isinstance(ioi[field], lit_types.CategoryLabel)
    pairs = PromptCompletionDataset.from_pairs([("a", "b")]).spec()
    assert set(pairs) == {"prompt", "completion", "text"}
    induction = InductionDataset.generate_simple(n_examples=1).spec()
    assert set(induction) == {"text", "pattern", "expected_completion"}


def test_batched_model_predicts_as_the_plain_one(model):
    config = HookedTransformerLITConfig(batch_size=2)
    plain, batched = HookedTransformerLIT(model, config), HookedTransformerLITBatched(model, config)
    examples = datasets()["ioi"].examples
    assert batched.max_minibatch_size() == 2
    for got, expected in zip(batched.predict(examples), plain.predict(examples), strict=True):
        assert got["tokens"] == expected["tokens"]
        np.testing.assert_array_equal(got["layer_1/attention"], expected["layer_1/attention"])
        np.testing.assert_array_equal(got["grad_l2"], expected["grad_l2"])
    assert batched.description() == plain.description()


def test_wrap_for_lit_copies_into_a_plain_lit_dataset():
    dataset = datasets()["pairs"]
    wrapped = wrap_for_lit(dataset)
    assert type(wrapped) is lit_dataset.Dataset
    assert wrapped.examples == dataset.examples and wrapped.examples is not dataset.examples
    assert wrapped.spec().keys() == dataset.spec().keys()
    assert wrapped.description() == dataset.description()


def test_lit_app_serves_predictions_and_gradient_salience(model):
    texts = datasets()["texts"]
    app = lit_app.LitApp(
        {"tiny": HookedTransformerLIT(model)},
        {"texts": texts},
        layouts=lit_layout.DEFAULT_LAYOUTS,
        client_root=tempfile.mkdtemp(),
    )
    inputs = [{"data": example, "id": str(i)} for i, example in enumerate(texts.examples)]
    preds = app._get_preds({"inputs": inputs}, model="tiny")
    assert [len(p["layer_0/attention"]) for p in preds] == [model.cfg.n_heads] * 2
    salience = app._get_interpretations(
        {"inputs": inputs}, model="tiny", dataset_name="texts", interpreter="Grad L2 Norm"
    )
    for example, result in zip(texts.examples, salience, strict=True):
        grad_l2, _, tokens = compute_token_gradients(model, example["text"])
        shown = result["grad_l2"]
        assert len(shown.tokens) == len(tokens)
        # LIT normalises the norms to sum to one.
        np.testing.assert_allclose(shown.salience, grad_l2 / grad_l2.sum(), atol=1e-5)


class Recorder:
    """Stands in for a LIT server or widget class: records how it was built and called."""

    instances: list["Recorder"] = []

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs, self.calls = args, kwargs, []
        self._server = type("Server", (), {"port": 4321})()
        Recorder.instances.append(self)

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


@pytest.fixture
def recorder(monkeypatch):
    Recorder.instances = []
    monkeypatch.setattr(dev_server, "Server", Recorder)
    monkeypatch.setattr(notebook, "LitWidget", Recorder)
    return Recorder.instances


def test_serve_wraps_a_single_model_and_dataset(model, recorder):
    dataset = datasets()["texts"]
    serve(model, dataset, port=1234, warm_start=1)
    (server,) = recorder
    models, named_datasets = server.args
    assert list(models) == ["model"] and isinstance(models["model"], HookedTransformerLIT)
    assert models["model"].model is model and named_datasets == {"dataset": dataset}
    assert server.kwargs["port"] == 1234 and server.kwargs["host"] == "localhost"
    assert server.kwargs["page_title"] == "TransformerLens + LIT"
    assert server.kwargs["layouts"] is lit_layout.DEFAULT_LAYOUTS
    assert server.kwargs["default_layout"] == "default" and server.kwargs["warm_start"] == 1
    assert os.path.isdir(server.kwargs["client_root"])
    assert [name for name, _, _ in server.calls] == ["serve"]


def test_serve_keeps_named_lit_models_and_copies_other_datasets(model, recorder):
    wrapper = HookedTransformerLIT(model)

    class Examples:
        examples = [{"text": "hi"}]

        def spec(self):
            return {"text": lit_types.TextSegment()}

        def description(self):
            return "mine"

    serve({"a": wrapper, "b": model}, {"mine": Examples()})
    models, named_datasets = recorder[0].args
    assert models["a"] is wrapper and isinstance(models["b"], HookedTransformerLIT)
    assert type(named_datasets["mine"]) is lit_dataset.Dataset
    assert named_datasets["mine"].examples == [{"text": "hi"}]


def test_lit_widget_starts_unrendered_and_delegates(model, recorder):
    widget = LITWidget(
        {"m": HookedTransformerLIT(model)}, datasets(), height=300, default_layout="x"
    )
    (inner,) = recorder
    assert inner.kwargs == {"height": 300, "render": False}
    assert widget.url == "http://localhost:4321"
    widget.render(open_in_new_tab=True)
    widget.stop()
    assert [name for name, _, _ in inner.calls] == ["render", "stop"]
    assert inner.calls[0][2] == {"open_in_new_tab": True}


def test_gradients_need_no_grad_mode(model):
    with torch.no_grad():
        (output,) = HookedTransformerLIT(model).predict([{"text": "the cat sat"}])
    assert np.abs(output["grad_l2"]).sum() > 0
