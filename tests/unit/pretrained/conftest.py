"""Fixtures of the pretrained tests: the session's tiny random Gemma and a checkpoint
directory saved from it."""

import pytest
import torch


@pytest.fixture
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
