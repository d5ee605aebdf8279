"""Shared fixtures. Nothing here touches the network: the hub is switched off for the run."""

import os
import socket

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.tiny_hf import tiny_hf  # noqa: E402


@pytest.fixture(scope="session")
def tiny_gemma_factory():
    """tiny_gemma(n_kv) -> tiny_hf("gemma", num_key_value_heads=n_kv) (eager attention,
    float32, norm weights random), cached per n_kv for the session. Shared: copy it before
    changing it."""
    models: dict[tuple, torch.nn.Module] = {}

    def make(num_key_value_heads: int = 1, **overrides):
        key = (num_key_value_heads, tuple(sorted(overrides.items())))
        if key not in models:
            models[key] = tiny_hf("gemma", num_key_value_heads=num_key_value_heads, **overrides)
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
