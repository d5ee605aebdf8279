"""Tokenizers trained locally (nothing is downloaded), saved in the Hugging Face format and
loaded back with AutoTokenizer, as a real checkpoint's tokenizer would be.

- `bos_adding_tokenizer`: like Gemma or Llama, its post-processor puts <bos> in front of
  every text; <pad>, <bos> and <eos> are distinct tokens.
- `plain_tokenizer`: like GPT-2, it adds nothing; <|endoftext|> is bos and eos, and the
  model fills in pad = eos when it attaches the tokenizer.

Both are byte-level BPE, so decoding gives back the exact text. Nothing here is a pytest
fixture: test modules wrap `save_tokenizers` in their own (module-scoped) fixture.
"""

from pathlib import Path
from typing import Any

SENTENCES = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "hello world",
    "hello there, general kenobi",
    "a quick brown fox jumps over the lazy dog",
    "the lazy dog sleeps in the sun",
    "cats and dogs are friends",
    "my cat likes fish and milk",
    "when the sun sets the sky turns red",
    "the river runs to the sea",
    "birds sing in the morning",
    "she reads a book every night",
    "he writes code in the afternoon",
    "we walked along the beach at dawn",
    "they built a house by the lake",
    "the train leaves at seven",
    "rain falls on the green hills",
    "snow covers the quiet town",
    "the children play in the park",
    "an apple a day keeps the doctor away",
    "time flies like an arrow",
    "fruit flies like a banana",
    "the end of the story is near",
    "once upon a time there was a king",
    "the king had three daughters",
    "the youngest daughter was very clever",
    "numbers like 1 2 3 and 42 appear too",
    "punctuation: commas, dots. and questions?",
    "the model predicts the next token",
    "attention is all you need",
]
VOCAB_SIZE = 400


def train_bpe(special_tokens: list[str]) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(SENTENCES, trainer)
    return tokenizer


def save_and_load(tokenizer: Any, directory: Path) -> Any:
    """Save in the HF format and load back through AutoTokenizer, as a checkpoint's is."""
    tokenizer.save_pretrained(directory)
    return load_tokenizer(directory)


def make_bos_adding_tokenizer(directory: Path) -> Any:
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    tokenizer = train_bpe(["<pad>", "<bos>", "<eos>"])
    bos_id = tokenizer.token_to_id("<bos>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", bos_id)]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )
    return save_and_load(wrapped, directory)


def make_plain_tokenizer(directory: Path) -> Any:
    from transformers import PreTrainedTokenizerFast

    tokenizer = train_bpe(["<|endoftext|>"])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>"
    )
    return save_and_load(wrapped, directory)


def save_tokenizers(root: Path) -> dict[str, Path]:
    """Train and save both tokenizers under `root`: {"bos_adding": dir, "plain": dir}.
    Load one with `load_tokenizer(dirs[name])`; a fresh load per test keeps the mutations
    of set_tokenizer (pad token, padding side) from leaking between tests."""
    dirs = {"bos_adding": root / "bos_adding", "plain": root / "plain"}
    make_bos_adding_tokenizer(dirs["bos_adding"])
    make_plain_tokenizer(dirs["plain"])
    return dirs


def load_tokenizer(directory: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory)
