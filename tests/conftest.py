"""Shared fixtures. Nothing here touches the network: the hub is switched off for the run."""

import os
import socket

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.helpers import randomize_norms, tiny_gemma_config  # noqa: E402


@pytest.fixture(scope="session")
def tiny_gemma_factory():
    """tiny_gemma(n_kv) -> a seeded random HF GemmaForCausalLM (eager attention, float32)
    with randomised norm weights, cached per n_kv for the session."""
    from transformers import GemmaForCausalLM

    models: dict[tuple, torch.nn.Module] = {}

    def make(num_key_value_heads: int = 1, **overrides):
        key = (num_key_value_heads, tuple(sorted(overrides.items())))
        if key not in models:
            torch.manual_seed(0)
            config = tiny_gemma_config(num_key_value_heads=num_key_value_heads, **overrides)
            model = GemmaForCausalLM(config).eval()
            randomize_norms(model)
            models[key] = model
        return models[key]

    return make


@pytest.fixture
def torch_threads():
    """Restores torch's thread count, whatever a test sets it to."""
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def no_network(monkeypatch):
    """Record any attempt to open a connection; the library may swallow a raised error."""
    attempts: list[tuple] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access is not allowed in unit tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield
    assert not attempts, f"network access attempted: {attempts}"
