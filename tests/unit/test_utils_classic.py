"""Classic helpers of transformer_lens.utils: initialisers, tensor and tokenizer helpers,
overridable defaults and the hub helpers (offline: the hub calls are monkeypatched)."""

import json
import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.tokenizers import load_tokenizer, save_tokenizers
from transformer_lens import _utils_hub, _utils_tensors, utils


@pytest.fixture(scope="module")
def tokenizer_dirs(tmp_path_factory):
    return save_tokenizers(tmp_path_factory.mktemp("tokenizers"))


# ---------------------------------------------------------------------------- initialisers


@pytest.mark.parametrize(("shape", "fans"), [((7,), (1, 7)), ((3, 5), (3, 5)), ((4, 6, 2), (6, 8))])
def test_fan_in_and_fan_out_follow_transformer_lens_layouts(shape, fans):
    assert utils.calc_fan_in_and_fan_out(torch.empty(shape)) == fans


@pytest.mark.parametrize("shape", [(), (2, 3, 4, 5)])
def test_fan_in_and_fan_out_reject_other_ranks(shape):
    with pytest.raises(ValueError, match="1-, 2- and 3-D"):
        utils.calc_fan_in_and_fan_out(torch.empty(shape))


def test_xavier_uniform_bound_and_variance():
    param = torch.empty(300, 500)
    torch.manual_seed(0)
    assert utils.init_xavier_uniform_(param, gain=2.0) is param
    bound = 2.0 * math.sqrt(6 / 800)
    assert param.abs().max() <= bound and param.abs().max() > 0.99 * bound
    # U(-a, a) has variance a^2 / 3.
    assert param.var().item() == pytest.approx(bound**2 / 3, rel=0.02)


def test_xavier_normal_std_uses_attention_fans():
    param = torch.empty(8, 200, 50)  # fan_in 200, fan_out 8 * 50
    torch.manual_seed(0)
    utils.init_xavier_normal_(param)
    assert param.std().item() == pytest.approx(math.sqrt(2 / 600), rel=0.02)
    assert param.mean().item() == pytest.approx(0.0, abs=0.002)


def test_kaiming_uniform_bound_with_relu_gain():
    param = torch.empty(400, 300)
    torch.manual_seed(0)
    utils.init_kaiming_uniform_(param)
    bound = math.sqrt(2.0) * math.sqrt(3 / 400)
    assert param.abs().max() <= bound and param.abs().max() > 0.99 * bound


@pytest.mark.parametrize(("mode", "fan"), [("fan_in", 400), ("fan_out", 300)])
def test_kaiming_normal_std_follows_mode_and_gains(mode, fan):
    param = torch.empty(400, 300)
    torch.manual_seed(0)
    utils.init_kaiming_normal_(param, a=0.2, nonlinearity="leaky_relu", gain=0.5, mode=mode)
    expected = 0.5 * math.sqrt(2 / (1 + 0.2**2)) / math.sqrt(fan)
    assert param.std().item() == pytest.approx(expected, rel=0.02)


def test_kaiming_rejects_unknown_mode():
    with pytest.raises(ValueError, match="fan_in"):
        utils.init_kaiming_normal_(torch.empty(3, 3), mode="fan-in")


# ---------------------------------------------------------------------------- tensor helpers


def test_to_numpy_keeps_classic_parameter_name():
    assert utils.to_numpy(tensor=torch.tensor([1.5, 2.0], dtype=torch.bfloat16)).tolist() == [
        1.5,
        2.0,
    ]
    assert utils.to_numpy("abc") == np.array("abc")


def test_square_and_lower_triangular():
    assert utils.is_square(torch.ones(3, 3)) and not utils.is_square(torch.ones(3, 2))
    assert not utils.is_square(torch.ones(3))
    assert utils.is_lower_triangular(torch.tril(torch.ones(3, 3)))
    assert not utils.is_lower_triangular(torch.ones(3, 3))
    assert not utils.is_lower_triangular(torch.ones(2, 3))


def test_cumsum_along_dim_forward_and_reverse():
    t = torch.tensor([[1, 2, 3], [4, 5, 6]])
    assert utils.get_cumsum_along_dim(t, -1).tolist() == [[1, 3, 6], [4, 9, 15]]
    assert utils.get_cumsum_along_dim(t, -1, reverse=True).tolist() == [[6, 5, 3], [15, 11, 6]]
    assert utils.get_cumsum_along_dim(t, 0, reverse=True).tolist() == [[5, 7, 9], [4, 5, 6]]


def test_repeat_along_head_dimension_copies_or_views():
    t = torch.arange(12.0).reshape(1, 3, 4)
    copies = utils.repeat_along_head_dimension(t, n_heads=2)
    assert copies.shape == (1, 3, 2, 4)
    assert torch.equal(copies[:, :, 0], t) and torch.equal(copies[:, :, 1], t)
    copies[0, 0, 0, 0] = 100.0
    assert t[0, 0, 0] == 0.0 and copies[0, 0, 1, 0] == 0.0
    view = utils.repeat_along_head_dimension(t, n_heads=2, clone_tensor=False)
    assert view.data_ptr() == t.data_ptr() and view.stride(2) == 0


def test_check_structure_reports_rows_and_columns(capsys):
    t1 = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    utils.check_structure(t1, t1 * 10)
    assert capsys.readouterr().out.strip() == "PASSED"
    utils.check_structure(t1, torch.tensor([[4.0, 3.0], [2.0, 1.0]]))
    out = capsys.readouterr().out
    assert "row mismatch: [0]" in out and "column mismatch: [0]" in out


def test_print_gpu_mem_in_gib(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda: 3 * 2**30)
    utils.print_gpu_mem("step")
    assert capsys.readouterr().out.strip() == "step ~ 3.00 GiB allocated on GPU."


def test_warn_if_mps_warns_once_unless_allowed(monkeypatch):
    monkeypatch.setattr(_utils_tensors, "_mps_warned", False)
    monkeypatch.delenv("TRANSFORMERLENS_ALLOW_MPS", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        utils.warn_if_mps("cpu")
        utils.warn_if_mps(torch.device("mps"))
        utils.warn_if_mps("mps")
    assert len(caught) == 1 and "MPS" in str(caught[0].message)
    monkeypatch.setattr(_utils_tensors, "_mps_warned", False)
    monkeypatch.setenv("TRANSFORMERLENS_ALLOW_MPS", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        utils.warn_if_mps("mps:0")


# ---------------------------------------------------------------------------- tokenizer helpers


def test_offset_position_ids_count_attended_tokens():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert utils.get_offset_position_ids(0, mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]
    assert utils.get_offset_position_ids(3, mask).tolist() == [[1, 2], [3, 4]]


def _ids(bos, pad, side):
    return SimpleNamespace(bos_token_id=bos, pad_token_id=pad, padding_side=side)


def test_bos_removed_right_padding_drops_first_column():
    tokens = torch.tensor([[1, 5, 6, 0], [1, 7, 0, 0]])
    out = utils.get_tokens_with_bos_removed(_ids(1, 0, "right"), tokens)
    assert out.tolist() == [[5, 6, 0], [7, 0, 0]]


def test_bos_removed_left_padding_with_its_own_bos_id():
    tokens = torch.tensor([[0, 0, 1, 5, 6], [0, 1, 8, 9, 10], [1, 3, 4, 5, 6]])
    out = utils.get_tokens_with_bos_removed(_ids(1, 0, "left"), tokens)
    assert out.tolist() == [[0, 0, 5, 6], [0, 8, 9, 10], [3, 4, 5, 6]]


def test_bos_removed_left_padding_when_bos_is_pad():
    tokens = torch.tensor([[0, 0, 0, 5, 6], [0, 7, 8, 9, 10]])
    out = utils.get_tokens_with_bos_removed(_ids(0, 0, "left"), tokens)
    assert out.tolist() == [[0, 0, 5, 6], [7, 8, 9, 10]]


def test_bos_removed_left_padding_without_bos_raises():
    with pytest.raises(ValueError, match=r"Rows \[1\]"):
        utils.get_tokens_with_bos_removed(_ids(1, 0, "left"), torch.tensor([[1, 5], [6, 7]]))


def test_manually_prepended_bos():
    tokenizer = SimpleNamespace(bos_token="<bos>")
    assert utils.get_input_with_manually_prepended_bos(tokenizer, "hi") == "<bos>hi"
    assert utils.get_input_with_manually_prepended_bos(tokenizer, ["a", "b"]) == [
        "<bos>a",
        "<bos>b",
    ]


def test_tokenizer_with_bos_keeps_one_that_adds_bos(tokenizer_dirs):
    tokenizer = load_tokenizer(tokenizer_dirs["bos_adding"])
    assert utils.get_tokenizer_with_bos(tokenizer) is tokenizer


def test_tokenizer_with_bos_reloads_a_local_one_with_bos(tokenizer_dirs):
    tokenizer = load_tokenizer(tokenizer_dirs["plain"])
    text_ids = tokenizer("hello world", add_special_tokens=False)["input_ids"]
    with_bos = utils.get_tokenizer_with_bos(tokenizer)
    assert with_bos is not tokenizer
    assert with_bos("hello world")["input_ids"] == [tokenizer.bos_token_id, *text_ids]


def test_tokenizer_with_bos_without_a_path_says_how_to_save_it(tokenizer_dirs):
    tokenizer = load_tokenizer(tokenizer_dirs["plain"])
    tokenizer.init_kwargs["name_or_path"] = ""
    tokenizer.name_or_path = ""
    with pytest.raises(ValueError, match="save_pretrained"):
        utils.get_tokenizer_with_bos(tokenizer)


# ---------------------------------------------------------------------------- defaults


def _model(prepend_bos=True, padding_side="right", tokenizer=True):
    tok = SimpleNamespace(padding_side=padding_side) if tokenizer else None
    return SimpleNamespace(cfg=SimpleNamespace(default_prepend_bos=prepend_bos), tokenizer=tok)


def test_override_or_use_default_value():
    assert utils.override_or_use_default_value("default") == "default"
    assert utils.override_or_use_default_value("default", override=False) is False


def test_nested_attr_get_and_set():
    obj = SimpleNamespace(a=SimpleNamespace(b=SimpleNamespace(c=1)))
    assert utils.get_nested_attr(obj, "a.b.c") == 1
    utils.set_nested_attr(obj, "a.b.c", 2)
    assert obj.a.b.c == 2


def test_locally_overriden_defaults_restore_on_exit_and_on_error():
    model = _model()
    with utils.LocallyOverridenDefaults(model, prepend_bos=False, padding_side="left"):
        assert model.cfg.default_prepend_bos is False and model.tokenizer.padding_side == "left"
    assert model.cfg.default_prepend_bos is True and model.tokenizer.padding_side == "right"
    with pytest.raises(RuntimeError):
        with utils.LocallyOverridenDefaults(model, padding_side="left"):
            raise RuntimeError
    assert model.tokenizer.padding_side == "right"


def test_locally_overriden_defaults_none_keeps_default_and_no_tokenizer_is_skipped():
    model = _model(prepend_bos=False, tokenizer=False)
    with utils.LocallyOverridenDefaults(model, prepend_bos=None, padding_side="left"):
        assert model.cfg.default_prepend_bos is False and model.tokenizer is None


@pytest.mark.parametrize(
    ("overrides", "message"), [({"padding_side": "up"}, "padding_side"), ({"colour": 1}, "colour")]
)
def test_locally_overriden_defaults_reject_bad_overrides_before_changing_anything(
    overrides, message
):
    model = _model()
    with pytest.raises(AssertionError, match=message):
        utils.LocallyOverridenDefaults(model, prepend_bos=False, **overrides)
    assert model.cfg.default_prepend_bos is True


# ---------------------------------------------------------------------------- hub helpers


def test_is_library_available():
    assert utils.is_library_available("json")
    assert not utils.is_library_available("no_such_module_for_transformer_lens")


def test_select_compatible_kwargs_includes_keyword_only_parameters():
    def target(a, b=1, *, c=2, **rest):
        return a

    assert utils.select_compatible_kwargs({"a": 1, "c": 3, "d": 4}, target) == {"a": 1, "c": 3}


def test_cache_dir_is_the_hub_cache():
    from huggingface_hub import constants

    assert utils.CACHE_DIR == constants.HUGGINGFACE_HUB_CACHE


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """hf_hub_download replaced by a lookup in tmp_path; records the keywords it got."""
    calls = []

    def download(repo_id, filename, *, subfolder=None, cache_dir=None, revision=None):
        calls.append(dict(repo_id=repo_id, subfolder=subfolder, revision=revision))
        return str(tmp_path / filename)

    monkeypatch.setattr(_utils_hub, "hf_hub_download", download)
    return tmp_path, calls


def test_download_file_from_hf_loads_json_and_torch_files(fake_hub):
    directory, calls = fake_hub
    (directory / "cfg.json").write_text(json.dumps({"d_model": 8}))
    torch.save({"w": torch.ones(2)}, directory / "weights.pth")
    torch.save(torch.zeros(3), directory / "weights.bin")
    (directory / "notes.txt").write_text("hi")
    assert utils.download_file_from_hf("org/repo", "cfg.json", revision="v1") == {"d_model": 8}
    assert torch.equal(utils.download_file_from_hf("org/repo", "weights.pth")["w"], torch.ones(2))
    loaded = utils.download_file_from_hf("org/repo", "weights.bin", force_is_torch=True)
    assert torch.equal(loaded, torch.zeros(3))
    assert utils.download_file_from_hf("org/repo", "notes.txt") == str(directory / "notes.txt")
    assert calls[0] == dict(repo_id="org/repo", subfolder=".", revision="v1")


def test_download_file_from_hf_drops_keywords_the_hub_does_not_take(fake_hub):
    directory, calls = fake_hub
    (directory / "cfg.json").write_text("{}")
    utils.download_file_from_hf("org/repo", "cfg.json", not_a_hub_argument=1)
    assert len(calls) == 1


def test_clear_huggingface_cache_removes_the_cache(monkeypatch, tmp_path):
    cache = tmp_path / "hub"
    (cache / "models--x").mkdir(parents=True)
    monkeypatch.setattr(_utils_hub, "CACHE_DIR", str(cache))
    utils.clear_huggingface_cache()
    assert not cache.exists()
