"""What the loading tests share: their marks (sockets refused, no gradients, the warnings a
tiny model under an official name gives), tokens for the tiny Gemma, HF log-probs."""

import pytest
import torch

TOKENS = torch.tensor([[2, 5, 17, 99, 3, 42, 7], [2, 64, 1, 0, 33, 8, 100]])

LOADING_MARKS = [
    # every test runs with sockets refused (the no_network fixture of tests/conftest.py)
    pytest.mark.usefixtures("no_network", "no_grad"),
    # Expected whenever a tiny model is loaded under an official name, or without a tokenizer.
    pytest.mark.filterwarnings(
        "ignore:Could not load a tokenizer:UserWarning",
        "ignore:hf_model's config differs:UserWarning",
        "ignore:center_writing_weights skipped:UserWarning",
    ),
]


def hf_log_probs(hf_model, tokens: torch.Tensor) -> torch.Tensor:
    return hf_model(tokens).logits.log_softmax(dim=-1)
