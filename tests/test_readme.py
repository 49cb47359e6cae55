"""The README's first lines: the commands a fresh machine runs (its code blocks run in
test_docs.py, the quickstart's result checked there)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_blocks(language: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_readme_starts_with_the_two_commands():
    first = readme_blocks("bash")[0].strip().splitlines()
    assert first[0].startswith('pip install -e ".[dev]" && cnnfeatures evaluate ../shared/')
    assert first[1] == 'python -m pytest -m "slow or not slow" -n 2 --dist worksteal'
    assert first[2] == "python benchmarks/validate.py"  # the validation command (optional)
