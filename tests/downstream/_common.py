"""Shared by the downstream scripts: a check runner and a tokenizer trained on the spot.

The scripts run in a client's own virtual environment (see .ci/downstream), not under the
fork's pytest, so this is plain Python: each check prints one line, and the process exits
non-zero when any check failed. Nothing here reaches the network.
"""

import os

# The hub is unreachable from CI; make transformers fail fast instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import sys  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

SENTENCES = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "hello world",
    "a quick brown fox jumps over the lazy dog",
    "when the sun sets the sky turns red",
    "the river runs to the sea",
    "once upon a time there was a king",
    "the model predicts the next token",
    "attention is all you need",
    "numbers like 1 2 3 and 42 appear too",
]
VOCAB_SIZE = 200


class Checks:
    """Runs named checks in order; a failing check is reported and the rest still run."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        try:
            result = fn()
        except Exception as exc:  # a check's failure is data for the report, not a crash
            self.failed += 1
            print(f"FAIL {name}: {type(exc).__name__}: {exc}")
            # The full traceback goes to stderr so CI logs keep it, stdout stays one line.
            traceback.print_exc(file=sys.stderr)
            return None
        self.passed += 1
        # A check may return a short string worth keeping in the log (a loss, a count).
        detail = f" ({result})" if isinstance(result, str) else ""
        print(f"PASS {name}{detail}")
        return result

    def finish(self) -> None:
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)


def make_tokenizer(directory: Path) -> Any:
    """A byte-level BPE tokenizer with distinct <pad>/<bos>/<eos>, saved in the HF format at
    `directory` and loaded back through AutoTokenizer, as a real checkpoint's would be."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=["<pad>", "<bos>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(SENTENCES, trainer)
    # Like Gemma and Llama: <bos> goes in front of every text.
    bos_id = tokenizer.token_to_id("<bos>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", bos_id)]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )
    wrapped.save_pretrained(directory)
    return AutoTokenizer.from_pretrained(directory)
