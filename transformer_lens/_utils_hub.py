"""Hugging Face Hub helpers of `transformer_lens.utils`: the cache directory, file
downloads, and keyword filtering for the hub's functions."""

import importlib.util
import inspect
import json
import logging
import shutil
import sys
from collections.abc import Callable
from typing import Any

import torch
from huggingface_hub import constants, hf_hub_download

CACHE_DIR = constants.HUGGINGFACE_HUB_CACHE
"""Where the Hugging Face Hub keeps downloaded files (HF_HUB_CACHE)."""

_logger = logging.getLogger(__name__)
_NAMED_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def is_library_available(name: str) -> bool:
    """Whether the module `name` is imported or importable, found without importing it
    (importing some optional libraries is slow or can crash)."""
    return name in sys.modules or importlib.util.find_spec(name) is not None


def select_compatible_kwargs(kwargs_dict: dict[str, Any], callable: Callable) -> dict[str, Any]:
    """The entries of `kwargs_dict` that `callable` accepts by name.

    Keyword-only parameters count too: classic listed only positional-or-keyword ones, so
    `hf_hub_download`'s `revision`, `token` and the like were silently dropped.
    """
    parameters = inspect.signature(callable).parameters
    named = {name for name, p in parameters.items() if p.kind in _NAMED_KINDS}
    return {key: value for key, value in kwargs_dict.items() if key in named}


def download_file_from_hf(
    repo_name: str,
    file_name: str,
    subfolder: str = ".",
    cache_dir: str | None = CACHE_DIR,
    force_is_torch: bool = False,
    **kwargs: Any,
) -> Any:
    """Download `subfolder/file_name` from the hub repo `repo_name` into `cache_dir`.

    Returns the loaded object for a torch file (".pth", or any file with force_is_torch)
    and for ".json", otherwise the local path. Extra keyword arguments that
    `hf_hub_download` accepts (revision, token, local_files_only, ...) are passed on.
    Torch files are unpickled in full (weights_only=False), as classic did, so only load
    files from repositories you trust.
    """
    file_path = hf_hub_download(
        repo_id=repo_name,
        filename=file_name,
        subfolder=subfolder,
        cache_dir=cache_dir,
        **select_compatible_kwargs(kwargs, hf_hub_download),
    )
    if file_path.endswith(".pth") or force_is_torch:
        return torch.load(file_path, map_location="cpu", weights_only=False)
    if file_path.endswith(".json"):
        with open(file_path) as file:
            return json.load(file)
    return file_path


def clear_huggingface_cache() -> None:
    """Delete the Hugging Face Hub cache (CACHE_DIR) and everything downloaded into it.

    Errors are ignored: files still being written by another process may vanish or appear
    while the tree is removed, and a partly cleared cache is harmless.
    """
    _logger.info("Deleting the Hugging Face cache at %s", CACHE_DIR)
    shutil.rmtree(CACHE_DIR, ignore_errors=True)
