"""Training checkpoints that classic knows of: which steps (or token counts) each checkpointed
model series published. Loading a checkpoint is not supported yet; the labels are."""

from __future__ import annotations

import re
from typing import Any

from transformer_lens.pretrained import hub
from transformer_lens.pretrained.log import logger
from transformer_lens.pretrained.name_hints import official_or_repo_id

# The steps saved during training of the stanford-crfm GPT-2 models (Mistral runs).
STANFORD_CRFM_CHECKPOINTS: list[int] = (
    list(range(0, 100, 10))
    + list(range(100, 2000, 50))
    + list(range(2000, 20000, 100))
    + list(range(20000, 400000 + 1, 1000))
)
# Pythia: log-spaced steps early on, then every 1000 steps (2,097,152 tokens per step).
PYTHIA_CHECKPOINTS: list[int] = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512] + list(
    range(1000, 143000 + 1, 1000)
)
# The original Pythia release (names ending in -v0) saved every 1000 steps only.
PYTHIA_V0_CHECKPOINTS: list[int] = list(range(1000, 143000 + 1, 1000))

_NEEL_CHECKPOINT_FILE = re.compile(r"checkpoints/.*_(\d+)\.pth$")
# NeelNanda's toy models label checkpoints by tokens seen, or by step; only tokens run
# into the billions.
_TOKEN_LABEL_THRESHOLD = 10**9


def get_checkpoint_labels(model_name: str, **kwargs: Any) -> tuple[list[int], str]:
    """(labels, "step" or "token") of a checkpointed model's training checkpoints, in
    training order. The schedule belongs to the organisation that published the series,
    so its hub prefix selects it; NeelNanda's repositories are listed on the hub."""
    repo = official_or_repo_id(model_name)
    if repo.startswith("stanford-crfm/"):
        return list(STANFORD_CRFM_CHECKPOINTS), "step"
    if repo.startswith("EleutherAI/pythia"):
        if repo.endswith("-v0"):
            return list(PYTHIA_V0_CHECKPOINTS), "step"
        logger.warning(
            "The Pythia models on the hub were retrained and replaced on 2023-04-03; "
            "the original ones are named with a -v0 suffix."
        )
        return list(PYTHIA_CHECKPOINTS), "step"
    if repo.startswith("NeelNanda/"):
        return labels_from_file_names(repo, hub.list_repo_files(repo, **kwargs))
    raise ValueError(
        f"{repo!r} has no training checkpoints that TransformerLens knows of; checkpointed "
        "series: stanford-crfm/*, EleutherAI/pythia*, NeelNanda/*"
    )


def labels_from_file_names(repo: str, file_names: list[str]) -> tuple[list[int], str]:
    """Checkpoint labels from a NeelNanda repository's files `checkpoints/<name>_<label>.pth`."""
    labels = sorted(
        {int(match.group(1)) for name in file_names if (match := _NEEL_CHECKPOINT_FILE.match(name))}
    )
    if not labels:
        raise ValueError(f"{repo!r} has no checkpoints/*_<label>.pth files")
    return labels, "token" if labels[-1] > _TOKEN_LABEL_THRESHOLD else "step"
