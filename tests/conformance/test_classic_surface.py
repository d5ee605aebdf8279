"""The classic 2.18 public surface (shared/classic-surface) is here: every name that
check_surface.py reports missing or unlike is listed in surface_exceptions with a reason."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conformance.surface_exceptions import NOT_YET, OTHER_ISSUES

CHECKER = (
    Path(__file__).resolve().parents[2].parent / "shared" / "classic-surface" / "check_surface.py"
)


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> list[str]:
    if not CHECKER.exists():
        pytest.skip(f"no classic surface checker at {CHECKER} (it lies beside the repository)")
    out = tmp_path_factory.mktemp("surface") / "surface.json"
    subprocess.run(
        [sys.executable, str(CHECKER), "--json", str(out), "--show", "0"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    rows = json.loads(out.read_text())
    return [f"{row['where']}: {row['name']}" for row in rows if row["status"] != "ok"]


def _excepted(line: str) -> bool:
    return any(line.startswith(prefix) for prefix in {**OTHER_ISSUES, **NOT_YET})


def test_every_classic_name_is_present_and_alike_or_excepted(reported):
    unexpected = [line for line in reported if not _excepted(line)]
    assert unexpected == [], "missing or unlike classic 2.18:\n" + "\n".join(unexpected)


def test_no_exception_outlives_its_name(reported):
    stale = [p for p in {**OTHER_ISSUES, **NOT_YET} if not any(r.startswith(p) for r in reported)]
    assert stale == [], f"these names are complete now; drop their exceptions: {stale}"
