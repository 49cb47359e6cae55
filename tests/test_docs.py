"""The documentation: every code block of README.md and docs/*.md runs, and the site builds.

Blocks run with sybil, page by page and in order (a page's blocks share one namespace, and
a command may use a file an earlier block wrote), in a sandbox laid out like a checkout:
``work/`` (the current directory, with copies of benchmarks/, docs/, examples/) beside
``shared/``, whose data are a few images of each class of every set in ../shared/data
(the session's ``small_data``; the real weights are linked). The commands and code are
those of the page, unchanged; only the data are smaller. Not run: the ``pip install`` of
the README (CI runs it, as the README says), ``python -m pytest`` (this test suite
itself), and the same for the other Keras backends (their venvs, and the suite run there).

``cnnfeatures reproduce`` commands run with ``--dry-run`` (every argument, the data, the
weights and the layers checked, the plan printed; a whole-data run is the validation
command's job, see benchmarks/validate.py), but for the README's, which runs for real on
the sandbox's few images; ``python benchmarks/bench_*.py`` commands run on their first
four images (``--limit 4``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, small_data):
    """``<tmp>/work`` (returned) and ``<tmp>/shared``: a checkout's layout, small data."""
    top = tmp_path_factory.mktemp("checkout")
    (top / "shared").mkdir()
    (top / "shared" / "data").symlink_to(small_data)
    (top / "shared" / "weights").symlink_to(SHARED / "weights")
    work = top / "work"
    work.mkdir()
    for folder in ("benchmarks", "docs", "examples"):
        shutil.copytree(ROOT / folder, work / folder)
    return work


#: A run of this test suite, on any interpreter and backend.
_TEST_RUN = re.compile(r"^(\w+=\S+ )*(\S*/)?python -m pytest")


def _readme_reproduce() -> str:
    """The README's reproduce command, continuation lines joined: the one real run."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "README.md").read_text())
    return " ".join(re.search(r"^cnnfeatures reproduce .*$", text, re.MULTILINE).group(0).split())


REAL_RUN = _readme_reproduce()

#: Images a benchmark command of the pages runs on here.
BENCHMARK_IMAGES = 4


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
            if not line or _TEST_RUN.match(line):
                continue
        # (The same command elsewhere runs for real too: it resumes from the journal.)
        if line.startswith("python benchmarks/validate.py"):  # the validation command
            line += " --dry-run"
        elif line.startswith("python benchmarks/bench_"):
            # A benchmark measures the whole data set; here it runs on its first images
            # (its own --limit), which checks that the command works.
            line += f" --limit {BENCHMARK_IMAGES}"
        elif line.startswith("cnnfeatures reproduce ") and " ".join(line.split()) != REAL_RUN:
            line += " --dry-run"
        commands.append(line)
    return commands


#: A ``cnnfeatures`` command without shell syntax: run by the CLI's ``main`` in this
#: process, which spares a TensorFlow start and a network build per command (a fresh
#: process's quiet stderr is test_first_hour.py's subject).
_IN_PROCESS = re.compile(r"^cnnfeatures [^|&;<>$`*?]*$")


def _cli_in_process(command: str) -> subprocess.CompletedProcess:
    import contextlib
    import io
    import shlex

    from cnnfeatures.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(shlex.split(command)[1:])
    return subprocess.CompletedProcess(command, status, out.getvalue(), err.getvalue())


def _sybil(work: Path):
    from sybil import Sybil
    from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
           f"{os.environ.get('PATH', '')}"}

    def run_bash(example) -> None:
        for command in _commands(example.parsed):
            if _IN_PROCESS.match(command):
                done = _cli_in_process(command)
            else:
                done = subprocess.run(["bash", "-c", command], cwd=work, env=env,
                                      capture_output=True, text=True, timeout=1800)
                # Quiet: no line of TensorFlow's C++ runtime (I0000 ..., absl::...).
                assert not re.search(r"^[IWEF]\d{4} |absl::", done.stderr, re.MULTILINE), (
                    f"{command}: backend log lines on stderr\n{done.stderr[-3000:]}")
            assert done.returncode == 0, (
                f"{example.path}:{example.line}: {command}\n{done.stderr[-3000:]}")
            if command.endswith("--dry-run"):  # every reproduce run checked, none run
                assert "dry run: arguments, data, weights and layers checked" in done.stdout
                assert re.search(r"^  estimate: ", done.stdout, re.MULTILINE), done.stdout

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
    if page.name == "README.md":
        # The quickstart searched layers and poolings, and its score is above chance
        # (three balanced classes: 1/3) on the sandbox's 15 training images.
        search = document.namespace["search"]
        assert set(search.best_params_) == {"cnnfeatureextractor__layer",
                                            "cnnfeatureextractor__pooling"}
        assert 0.5 < search.best_score_ <= 1.0


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
