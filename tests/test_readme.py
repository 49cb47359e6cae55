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
    # The main job needs the library alone; the tests add the dev extra first.
    assert first[0].startswith("pip install -e . && cnnfeatures evaluate ../shared/")
    assert first[1] == ('pip install -e ".[dev]" && '
                        'python -m pytest -m "slow or not slow" -n 2 --dist worksteal')
    assert first[2] == "python benchmarks/validate.py"  # the validation command (optional)


def test_package_index_description_reads_without_the_repository():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    readme = project["readme"]
    assert readme["content-type"] == "text/markdown"
    text = (ROOT / readme["file"]).read_text()
    # No link into the repository (docs/..., ../shared): the package index has neither.
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert all(link.startswith("https://") for link in links), links
    assert "../shared" not in text
    # The install lines name the extras that exist.
    for extra in re.findall(r"cnnfeatures\[(\w+)\]", text):
        assert extra in project["optional-dependencies"], extra
