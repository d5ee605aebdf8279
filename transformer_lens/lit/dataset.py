"""Example sets for HookedTransformerLIT: plain texts, prompt/completion pairs, and generated
IOI and induction prompts. Building and iterating them needs no lit-nlp; spec() and serving
do. Where lit-nlp is installed they are LIT Datasets."""

import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformer_lens.lit._lit_api import lit_base, lit_module
from transformer_lens.lit.constants import INPUT_FIELDS

__all__ = [
    "DatasetConfig",
    "IOIDataset",
    "InductionDataset",
    "PromptCompletionDataset",
    "SimpleTextDataset",
    "wrap_for_lit",
]

logger = logging.getLogger(__name__)

Example = dict[str, Any]

if TYPE_CHECKING:
    _LitDataset = object
else:
    _LitDataset = lit_base("api.dataset", "Dataset")


@dataclass
class DatasetConfig:
    """Kept from classic TransformerLens, which defined it but read it nowhere."""

    max_examples: int | None = None
    shuffle: bool = False
    seed: int = 42


class _ExampleList(_LitDataset):
    """A named list of example dicts; subclasses say what the examples are (`_NOUN`) and the
    LIT type of each field (`_FIELD_TYPES`)."""

    _NOUN = "examples"
    _FIELD_TYPES: dict[str, str] = {INPUT_FIELDS.TEXT: "TextSegment"}

    def __init__(self, examples: list[Example] | None = None, name: str = "") -> None:
        super().__init__()
        self._name = name
        self._examples: list[Example] = list(examples or [])

    @property
    def examples(self) -> list[Example]:
        """The examples, in order."""
        return self._examples

    def __len__(self) -> int:
        return len(self._examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self._examples)

    def description(self) -> str:
        """The name and the number of examples, for the LIT UI."""
        return f"{self._name}: {len(self._examples)} {self._NOUN}"

    def spec(self) -> dict[str, Any]:
        """Each field's lit_nlp type (needs lit-nlp)."""
        types = lit_module("api.types", f"{type(self).__name__}.spec")
        return {field: getattr(types, kind)() for field, kind in self._FIELD_TYPES.items()}

    @classmethod
    def init_spec(cls) -> None:
        """None: these are built in Python, not loaded from LIT's UI."""
        return None


class SimpleTextDataset(_ExampleList):
    """Examples with a "text" field (and any others)."""

    def __init__(self, examples: list[Example] | None = None, name: str = "SimpleTextDataset"):
        """ValueError if an example has no "text"."""
        super().__init__(examples, name)
        for i, example in enumerate(self._examples):
            if INPUT_FIELDS.TEXT not in example:
                raise ValueError(f"Example {i} missing required field '{INPUT_FIELDS.TEXT}'")

    @classmethod
    def from_strings(cls, texts: Sequence[str], name: str = "TextDataset") -> "SimpleTextDataset":
        """One example per string."""
        return cls([{INPUT_FIELDS.TEXT: text} for text in texts], name=name)

    @classmethod
    def from_file(
        cls, filepath: str | Path, name: str | None = None, max_examples: int | None = None
    ) -> "SimpleTextDataset":
        """One example per non-blank line of a UTF-8 file (stripped), at most `max_examples`;
        named after the file unless `name` is given."""
        path = Path(filepath)
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        texts = [text for text in texts if text][:max_examples]
        return cls.from_strings(texts, name=path.stem if name is None else name)


class PromptCompletionDataset(_ExampleList):
    """Prompt/completion pairs; each example's "text" is prompt + completion."""

    PROMPT_FIELD = "prompt"
    COMPLETION_FIELD = "completion"
    FULL_TEXT_FIELD = "text"
    _NOUN = "prompt-completion pairs"
    _FIELD_TYPES = {
        PROMPT_FIELD: "TextSegment",
        COMPLETION_FIELD: "TextSegment",
        FULL_TEXT_FIELD: "TextSegment",
    }

    def __init__(
        self, examples: list[Example] | None = None, name: str = "PromptCompletionDataset"
    ):
        """ValueError if an example has no "prompt"; a missing completion is ""."""
        super().__init__(None, name)
        for example in examples or []:
            self._add_example(example)

    def _add_example(self, example: Example) -> None:
        if self.PROMPT_FIELD not in example:
            raise ValueError(f"Example missing required field '{self.PROMPT_FIELD}'")
        # A copy: the caller's dicts stay as they were given.
        example = {self.COMPLETION_FIELD: "", **example}
        example[self.FULL_TEXT_FIELD] = example[self.PROMPT_FIELD] + example[self.COMPLETION_FIELD]
        self._examples.append(example)

    @classmethod
    def from_pairs(
        cls, pairs: Sequence[tuple[str, str]], name: str = "PromptCompletionDataset"
    ) -> "PromptCompletionDataset":
        """One example per (prompt, completion)."""
        return cls(
            [{cls.PROMPT_FIELD: prompt, cls.COMPLETION_FIELD: end} for prompt, end in pairs],
            name=name,
        )


class IOIDataset(_ExampleList):
    """Indirect Object Identification prompts (Wang et al. 2022,
    https://arxiv.org/abs/2211.00593): the answer is name2, the one who receives."""

    NAMES = [
        "Mary", "John", "Alice", "Bob", "Charlie", "Diana",
        "Emma", "Frank", "Grace", "Henry", "Ivy", "Jack",
    ]  # fmt: skip
    PLACES = [
        "store", "park", "beach", "restaurant", "library",
        "museum", "cafe", "market", "school", "hospital",
    ]  # fmt: skip
    OBJECTS = [
        "book", "gift", "letter", "key", "phone",
        "drink", "flower", "card", "ticket", "bag",
    ]  # fmt: skip
    TEMPLATE = "When {name1} and {name2} went to the {place}, {name1} gave a {object} to"
    _NOUN = "IOI examples"
    _FIELD_TYPES = {
        INPUT_FIELDS.TEXT: "TextSegment",
        **{field: "CategoryLabel" for field in ("name1", "name2", "place", "object", "answer")},
    }

    def __init__(self, examples: list[Example] | None = None, name: str = "IOI Dataset"):
        """Starts with `examples` (as given); add more with add_example or use generate."""
        super().__init__(examples, name)

    def add_example(self, name1: str, name2: str, place: str, obj: str) -> None:
        """Append TEMPLATE filled in: name1 gives `obj` to name2 at `place`."""
        text = self.TEMPLATE.format(name1=name1, name2=name2, place=place, object=obj)
        fields = {"name1": name1, "name2": name2, "place": place, "object": obj}
        self._examples.append({INPUT_FIELDS.TEXT: text, **fields, "answer": name2})

    @classmethod
    def generate(
        cls, n_examples: int = 100, seed: int = 42, name: str = "IOI Dataset"
    ) -> "IOIDataset":
        """`n_examples` prompts with two different names, a place and an object drawn at
        random. A private generator: the same draws as classic's `random.seed(seed)`,
        without resetting the global random state."""
        rng = random.Random(seed)
        dataset = cls(name=name)
        for _ in range(n_examples):
            name1, name2 = rng.sample(cls.NAMES, 2)
            place = rng.choice(cls.PLACES)
            dataset.add_example(name1, name2, place, rng.choice(cls.OBJECTS))
        return dataset


class InductionDataset(_ExampleList):
    """Repeated-pattern prompts for induction heads (Olsson et al. 2022,
    https://arxiv.org/abs/2209.11895): the text ends where the pattern starts again."""

    _NOUN = "induction examples"
    _FIELD_TYPES = {
        INPUT_FIELDS.TEXT: "TextSegment",
        "pattern": "TextSegment",
        "expected_completion": "TextSegment",
    }
    _PATTERNS = [
        ("The cat sat", "on the mat"),
        ("Hello my name", "is Alice"),
        ("The quick brown", "fox jumps"),
        ("Once upon a", "time there"),
        ("In the beginning", "was the"),
        ("To be or", "not to"),
        ("The sun rises", "in the"),
        ("Water flows down", "the hill"),
    ]
    _CONNECTORS = ["Then, later,", "After that,", "Subsequently,", "Next,"]

    def __init__(self, examples: list[Example] | None = None, name: str = "Induction Dataset"):
        """Starts with `examples` (as given); add more with add_example or generate_simple."""
        super().__init__(examples, name)

    def add_example(self, pattern: str, repeated_text: str, completion: str) -> None:
        """Append "<pattern> <repeated_text> <first word of pattern>", expecting `completion`."""
        text = f"{pattern} {repeated_text} {pattern.split()[0]}"
        self._examples.append(
            {INPUT_FIELDS.TEXT: text, "pattern": pattern, "expected_completion": completion}
        )

    @classmethod
    def generate_simple(
        cls, n_examples: int = 50, seed: int = 42, name: str = "Induction Dataset"
    ) -> "InductionDataset":
        """`n_examples` prompts cycling through eight short patterns, each followed by a
        random connector. The expected completion is the rest of the pattern after its
        first word, which is what the text ends with."""
        rng = random.Random(seed)
        dataset = cls(name=name)
        for i in range(n_examples):
            pattern = " ".join(cls._PATTERNS[i % len(cls._PATTERNS)])
            rest = pattern.split(maxsplit=1)[1]
            dataset.add_example(pattern, rng.choice(cls._CONNECTORS), completion=rest)
        return dataset


def wrap_for_lit(dataset: Any) -> Any:
    """A plain LIT Dataset holding a copy of `dataset`'s examples, spec and description
    (needs lit-nlp)."""
    lit_dataset = lit_module("api.dataset", "wrap_for_lit")
    return lit_dataset.Dataset(
        spec=dataset.spec(), examples=list(dataset.examples), description=dataset.description()
    )
