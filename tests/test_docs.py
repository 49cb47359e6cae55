"""The documentation: every code block of README.md and docs/*.md runs, and the site builds.

Blocks run with sybil, page by page and in order (a page's blocks share one namespace, and
a command may use a file an earlier block wrote), in a sandbox laid out like a checkout:
``work/`` (the current directory, with copies of benchmarks/ and examples/) beside
``shared/``, whose data are a few images of each class of every set in
../shared/data (the real weights are linked). The commands and code are those of the page,
unchanged; only the data are smaller. Not run: the ``pip install`` of the README (CI runs
it, as the README says), ``python -m pytest`` (this test suite itself), and the same for
the other Keras backends (their venvs, and the suite run there).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import DATA, SHARED

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PER_CLASS = {"train": 5, "test": 3}  # images per class and split in the sandbox


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """``<tmp>/work`` (returned) and ``<tmp>/shared``: a checkout's layout, small data."""
    top = tmp_path_factory.mktemp("checkout")
    for dataset in sorted(p for p in DATA.iterdir() if p.is_dir()):
        for split_dir in sorted(p for p in dataset.iterdir() if p.is_dir()):
            for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
                target = top / "shared" / "data" / dataset.name / split_dir.name / class_dir.name
                target.mkdir(parents=True)
                files = sorted(class_dir.iterdir())
                # The first two (pages name them), then spread over the folder: several
                # patients or slides.
                picks = np.unique(np.r_[0, 1, np.linspace(2, len(files) - 1, PER_CLASS.get(
                    split_dir.name, 2) - 2).round()].clip(0, len(files) - 1))
                for f in (files[int(i)] for i in picks):
                    (target / f.name).symlink_to(f)
    (top / "shared" / "weights").symlink_to(SHARED / "weights")
    work = top / "work"
    work.mkdir()
    for folder in ("benchmarks", "examples"):
        shutil.copytree(ROOT / folder, work / folder)
    return work


#: A run of this test suite, on any interpreter and backend.
_TEST_RUN = re.compile(r"^(\w+=\S+ )*(\S*/)?python -m pytest")


def _commands(block: str) -> list[str]:
    """A bash block's commands: continuation lines joined; the install and the test run
    of the checkout instructions left out (see the module docstring)."""
    text = re.sub(r"\\\n\s*", " ", block)
    commands = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or _TEST_RUN.match(line):
            continue
        if line.startswith("python -m venv"):  # another backend's venv: an install step
            continue
        if line.startswith("pip install"):
            line = line.partition("&&")[2].strip()
            if not line:
                continue
        commands.append(line)
    return commands


def _sybil(work: Path):
    from sybil import Sybil
    from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
           f"{os.environ.get('PATH', '')}"}

    def run_bash(example) -> None:
        for command in _commands(example.parsed):
            done = subprocess.run(["bash", "-c", command], cwd=work, env=env,
                                  capture_output=True, text=True, timeout=1800)
            assert done.returncode == 0, (
                f"{example.path}:{example.line}: {command}\n{done.stderr[-3000:]}")
            # Quiet: no line of TensorFlow's C++ runtime (I0000 ..., absl::...).
            assert not re.search(r"^[IWEF]\d{4} |absl::", done.stderr, re.MULTILINE), (
                f"{command}: backend log lines on stderr\n{done.stderr[-3000:]}")

    return Sybil(parsers=[PythonCodeBlockParser(), CodeBlockParser("bash", run_bash)])


def test_every_page_has_only_runnable_blocks():
    """Blocks are python or bash (others would not run), and each page's count is known."""
    for page in PAGES:
        fences = re.findall(r"^```(\w*)$", page.read_text(), flags=re.MULTILINE)
        languages = set(fences[0::2])  # opening fences
        assert languages <= {"python", "bash", "text"}, (page.name, languages)


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_code_blocks_run(page, sandbox, monkeypatch):
    monkeypatch.chdir(sandbox)
    document = _sybil(sandbox).parse(page)
    examples = list(document)
    for example in examples:
        example.evaluate()


def test_site_builds_without_warnings(tmp_path):
    """mkdocs --strict: a broken docstring, link or reference fails; the API reference
    covers every public name."""
    import cnnfeatures

    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d",
                           str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "WARNING" not in done.stderr, done.stderr[-3000:]
    html = (tmp_path / "site" / "api" / "index.html").read_text()
    ids = set(re.findall(r'id="(cnnfeatures[\w.]*)"', html))
    missing = [n for n in cnnfeatures.__all__ if not any(i.endswith("." + n) for i in ids)]
    assert not missing, f"public names without an entry in the API reference: {missing}"
