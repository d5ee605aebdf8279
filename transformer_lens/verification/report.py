"""The verification report: rows, a text table for people and a dict for machines."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from transformer_lens.verification.checks import Row


@dataclass
class Report:
    """What `verify` measured: the setup and one row per check."""

    model: str
    origin: str
    dtype: str
    device: str
    n_layers: int
    relative_tolerance: float
    prompts: list[list[int]]
    prompt_texts: list[str] | None
    rows: list[Row] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No row is over its tolerance (informational rows do not count)."""
        return all(row.passed is not False for row in self.rows)

    @property
    def failures(self) -> list[Row]:
        """The rows over their tolerance."""
        return [row for row in self.rows if row.passed is False]

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-serialisable data (what `--json` prints)."""
        return {
            "model": self.model,
            "origin": self.origin,
            "dtype": self.dtype,
            "device": self.device,
            "n_layers": self.n_layers,
            "relative_tolerance": self.relative_tolerance,
            "prompts": self.prompts,
            "prompt_texts": self.prompt_texts,
            "rows": [
                {
                    "check": row.check,
                    # Strict JSON has no Infinity: a failure with no number is null.
                    "value": row.value if row.value is None or math.isfinite(row.value) else None,
                    "tolerance": row.tolerance,
                    "unit": row.unit,
                    "passed": row.passed,
                    "note": row.note,
                }
                for row in self.rows
            ],
            "passed": self.passed,
        }

    def format_table(self) -> str:
        """The report as a text table with a one-line verdict at the end."""
        width = max(len(row.check) for row in self.rows) if self.rows else 10
        lines = [
            f"Model   {self.model} ({self.origin})",
            f"Setup   {self.n_layers} layers, {self.dtype}, {self.device}, "
            f"{len(self.prompts)} prompts of {', '.join(str(len(p)) for p in self.prompts)} tokens",
            f"Rule    |difference| <= {self.relative_tolerance:g} * max(1, max |reference|)",
            "",
            f"{'check':<{width}}  {'value':>11}  {'tolerance':>10}  result",
            f"{'-' * width}  {'-' * 11}  {'-' * 10}  ------",
        ]
        for row in self.rows:
            value = "" if row.value is None else _number(row.value, row.unit)
            tolerance = "" if row.tolerance is None else f"{row.tolerance:.2e}"
            result = {True: "ok", False: "FAIL", None: ""}[row.passed]
            note = f"  {row.note}" if row.note else ""
            lines.append(f"{row.check:<{width}}  {value:>11}  {tolerance:>10}  {result}{note}")
        verdict = (
            "PASSED: every row within its tolerance"
            if self.passed
            else f"FAILED: {len(self.failures)} row(s) over tolerance: "
            + ", ".join(row.check for row in self.failures)
        )
        return "\n".join([*lines, "", verdict])


def _number(value: float, unit: str) -> str:
    if unit:
        return f"{value:.1f} {unit}"
    return f"{value:.3e}"
