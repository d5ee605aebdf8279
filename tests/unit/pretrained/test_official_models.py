"""Official model names (official_models): case-insensitive resolution, the alias tables,
and the error for a name that is not official. No network."""

import pytest

from tests.unit.pretrained.loading import LOADING_MARKS
from transformer_lens import loading_from_pretrained

pytestmark = LOADING_MARKS


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
