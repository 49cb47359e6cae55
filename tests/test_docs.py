"""The API reference (docs/api.md) covers the public API and is up to date."""

import importlib.util
import re
from pathlib import Path

import cnnfeatures

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_api", DOCS / "make_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_reference_is_complete_and_up_to_date(tmp_path):
    committed = (DOCS / "api.md").read_text(encoding="utf-8")

    headings = set(re.findall(r"^#+ `?([\w.]+)`?\s*$", committed, flags=re.MULTILINE))
    missing = [name for name in cnnfeatures.__all__ if name not in headings]
    assert not missing, f"names of cnnfeatures.__all__ without a heading in api.md: {missing}"

    output = tmp_path / "api.md"
    assert _load_generator().main([str(output)]) == 0
    assert output.read_text(encoding="utf-8") == committed, (
        "docs/api.md is stale: run `python docs/make_api.py`"
    )
