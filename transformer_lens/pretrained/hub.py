"""The Hugging Face Hub, reached only for what is not on disk: a checkpoint snapshot, one
file, or a repository's file list. Each fails with an error that says what works offline."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

# Keyword arguments of from_pretrained that reach the hub download of an official checkpoint.
HUB_KWARGS = ("revision", "cache_dir", "token")
_SNAPSHOT_PATTERNS = ["*.json", "*.safetensors", "tokenizer*", "*.model"]


class CheckpointUnavailableError(FileNotFoundError):
    """Checkpoint files that are neither on disk nor downloadable now. A FileNotFoundError,
    as huggingface_hub's own LocalEntryNotFoundError is, so existing handlers still match."""


def what_works(name: str, cached: bool = True) -> str:
    """The ways to load a model without the hub, as lines of an error message. `cached`:
    whether the name is one that loads from the local Hugging Face cache (official names)."""
    lines = [
        "What works without the hub:",
        "  - hf_model=: load the Hugging Face model yourself and pass it, e.g. "
        f"HookedTransformer.from_pretrained({name!r}, "
        "hf_model=AutoModelForCausalLM.from_pretrained(path))",
        "  - a local directory written by save_pretrained: "
        "HookedTransformer.from_pretrained('/path/to/that/directory')",
    ]
    if cached:
        lines.append(
            "  - HF_HUB_OFFLINE=1 with the checkpoint in the local Hugging Face cache (fetch it "
            f"once where the hub is reachable, e.g. `hf download {name}`)"
        )
    return "\n".join(lines)


def cache_dir(hub_kwargs: dict[str, Any]) -> str:
    from huggingface_hub import constants

    return str(hub_kwargs.get("cache_dir") or constants.HF_HUB_CACHE)


def why_unreachable(error: BaseException) -> str:
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return "HF_HUB_OFFLINE is set, so the hub is not contacted"
    return f"the hub could not be used ({type(error).__name__}: {error})"


def snapshot(repo: str, hub_kwargs: dict[str, Any]) -> str:
    """A local directory with the checkpoint: the Hugging Face cache first (works offline),
    else a download."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return str(
            snapshot_download(
                repo, allow_patterns=_SNAPSHOT_PATTERNS, local_files_only=True, **hub_kwargs
            )
        )
    except LocalEntryNotFoundError:
        pass  # not cached: download it
    try:
        return str(snapshot_download(repo, allow_patterns=_SNAPSHOT_PATTERNS, **hub_kwargs))
    except Exception as error:  # offline, unreachable, gated, ...: each said in the message
        raise CheckpointUnavailableError(
            f"Cannot load {repo!r}: its checkpoint is not in the local Hugging Face cache "
            f"({cache_dir(hub_kwargs)}) and {why_unreachable(error)}.\n{what_works(repo)}"
        ) from error


def json_file(repo: str, filename: str, **kwargs: Any) -> Any:
    """A JSON file of a hub repository, from the local cache when it is there."""
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(repo, filename, **compatible_kwargs(kwargs, hf_hub_download))
    except Exception as error:  # offline, unreachable, missing file: each said in the message
        raise CheckpointUnavailableError(
            f"Cannot read {filename} of {repo!r}: it is not in the local Hugging Face cache "
            f"({cache_dir(kwargs)}) and {why_unreachable(error)}."
        ) from error
    with open(path) as file:
        return json.load(file)


def list_repo_files(repo: str, **kwargs: Any) -> list[str]:
    """The file names of a hub repository; only the hub knows them, so this needs it."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        return list(api.list_repo_files(repo, **compatible_kwargs(kwargs, api.list_repo_files)))
    except Exception as error:  # offline, unreachable, unknown repository
        raise CheckpointUnavailableError(
            f"Cannot list the files of {repo!r} on the Hugging Face Hub: {why_unreachable(error)}."
        ) from error


def compatible_kwargs(kwargs: dict[str, Any], function: Callable[..., Any]) -> dict[str, Any]:
    """The entries of kwargs that `function` takes by name (classic passes one bag of
    keyword arguments to several Hugging Face functions)."""
    parameters = inspect.signature(function).parameters
    return {key: value for key, value in kwargs.items() if key in parameters}
