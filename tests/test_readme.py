"""The README's quickstart runs as written (from the repository root, ../shared beside it)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_blocks(language: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_readme_starts_with_the_two_commands():
    first = readme_blocks("bash")[0].strip().splitlines()
    assert first[0].startswith('pip install -e ".[dev]" && cnnfeatures evaluate ../shared/')
    assert first[1] == 'python -m pytest -m "slow or not slow"'


@pytest.mark.slow
def test_readme_quickstart_runs_as_written():
    (code,) = readme_blocks("python")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    # It prints the best parameters and a cross-validated accuracy.
    best, score = done.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    assert "cnnfeatureextractor__layer" in best
    assert 0.5 < float(score) <= 1.0
