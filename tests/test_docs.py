"""The API reference (docs/api.md) covers the public API and is up to date."""

import re
import subprocess
import sys
from pathlib import Path

import cnnfeatures

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_api_reference_is_complete_and_up_to_date(tmp_path):
    committed = (DOCS / "api.md").read_text(encoding="utf-8")

    headings = set(re.findall(r"^#+ `?([\w.]+)`?\s*$", committed, flags=re.MULTILINE))
    missing = [name for name in cnnfeatures.__all__ if name not in headings]
    assert not missing, f"names of cnnfeatures.__all__ without a heading in api.md: {missing}"

    output = tmp_path / "api.md"
    # A fresh interpreter: other tests register backbones (the registry is documented), so
    # generating in this process would depend on which tests ran before.
    done = subprocess.run([sys.executable, str(DOCS / "make_api.py"), str(output)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert output.read_text(encoding="utf-8") == committed, (
        "docs/api.md is stale: run `python docs/make_api.py`"
    )
