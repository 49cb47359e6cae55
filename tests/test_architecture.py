"""The layered house of docs/architecture.md: no module imports one on a higher floor.

Imports inside functions count too (the lazy ones): a cycle hidden there is still a cycle.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cnnfeatures"

#: Floor of each top-level module or subpackage of cnnfeatures (docs/architecture.md).
FLOORS = {
    "config": 0, "memo": 0, "version": 0, "backend": 0, "messages": 0, "devices": 0,
    "wrapping": 0,
    "images": 1,
    "targets": 2, "datasets": 2,
    "backbones": 3,
    "cache": 4,
    "instrumentation": 5,
    "descriptors": 6, "extraction": 6, "vlad": 6,
    "preprocessing": 7, "augmentation": 7, "distributed": 7, "shift": 7,
    "ensemble": 7, "regions": 7,
    "models": 8,
    "explain": 9, "estimator_checks": 9,
    "report": 10,
    "cli": 11,
}


def _part(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def _imported_parts(path: Path) -> set[str]:
    """cnnfeatures parts a file imports (relative or absolute), other than its own."""
    own = _part(path)
    depth = len(path.relative_to(PACKAGE).parts) - 1  # 0: a top-level module
    parts = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: climb to the package root first
                if node.level - 1 < depth:
                    continue  # inside its own subpackage
                module = node.module or ""
                names = [module.split(".")[0]] if module else [a.name for a in node.names]
            elif (node.module or "").startswith("cnnfeatures."):
                names = [node.module.split(".")[1]]
            else:
                continue
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names
                     if a.name.startswith("cnnfeatures.")]
        else:
            continue
        parts.update(n for n in names if n and n != own)
    return parts


def test_no_module_imports_a_higher_floor():
    files = [p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE]
    unknown = {_part(p) for p in files} - set(FLOORS)
    assert not unknown, f"modules without a floor in docs/architecture.md: {unknown}"
    upward = []
    for path in files:
        floor = FLOORS[_part(path)]
        for part in _imported_parts(path):
            assert part in FLOORS, (path, part)
            if FLOORS[part] > floor:
                upward.append(f"{path.relative_to(PACKAGE)} imports {part} "
                              f"(floor {FLOORS[part]} > {floor})")
    assert not upward, "\n".join(upward)


BACKENDS = {"tensorflow", "jax", "jaxlib", "torch"}


def _backend_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names} & BACKENDS
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found |= {node.module.split(".")[0]} & BACKENDS
    return found


def test_only_backend_py_imports_a_keras_backend():
    """TensorFlow, JAX and PyTorch are reached through cnnfeatures/backend.py alone
    (docs/backends.md): everything else is Keras, so it runs on any of them."""
    offenders = {str(p.relative_to(PACKAGE)): sorted(_backend_imports(p))
                 for p in PACKAGE.rglob("*.py")
                 if p.name != "backend.py" and _backend_imports(p)}
    assert offenders == {}
    assert _backend_imports(PACKAGE / "backend.py") == {"tensorflow", "jax", "torch"}


IMPORT_PROBE = """
import atexit, os, sys
# Dependencies that do such things at their own import: OpenCV and scikit-learn set
# variables (LD_LIBRARY_PATH, KMP_*), Pillow registers an exit hook.
import cv2, sklearn, PIL.Image
before, callbacks = dict(os.environ), atexit._ncallbacks()
import cnnfeatures, cnnfeatures.cache, cnnfeatures.cli, cnnfeatures.report
from cnnfeatures import CNNFeatureExtractor, FineTunedCNNClassifier
CNNFeatureExtractor(), FineTunedCNNClassifier()
changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
print(changed, atexit._ncallbacks() - callbacks, "keras" in sys.modules)
"""


def test_import_does_nothing_until_it_is_needed():
    """Importing cnnfeatures (and making estimators) writes no environment variable,
    registers no exit hook and starts no backend: the session cache is named when an
    estimator that uses it is fitted or cloned."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True,
                          env={k: v for k, v in __import__("os").environ.items()
                               if not k.startswith("CNNFEATURES")})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["[]", "0", "False"], done.stdout


def test_tests_mirror_the_package():
    """A subpackage's tests live in a folder of the same name (tests/models/ for
    cnnfeatures/models/), so that a change's tests are found beside it."""
    tests = Path(__file__).resolve().parent
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    folders = {p.parent.name for p in tests.glob("*/__init__.py")}
    assert folders == subpackages
    for folder in folders:
        assert list((tests / folder).glob("test_*.py")), f"tests/{folder}/ holds no tests"


def test_no_module_over_400_lines_nor_class_over_250():
    """Rooms that hold one idea each (docs/architecture.md): a module that outgrows 400
    lines, or a class 250, is split where its ideas part."""
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > 400:
            too_long.append(f"{path.relative_to(PACKAGE)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno >= 250:
                too_long.append(f"{path.relative_to(PACKAGE)}: class {node.name}, "
                                f"{node.end_lineno - node.lineno + 1} lines")
    assert not too_long


def test_every_relative_import_names_a_module_of_the_package():
    """``from .x import`` inside a subpackage means a sibling: a module moved into a
    package with its lazy imports unchanged would point at nothing (and fail only when
    the function runs)."""
    dangling = []
    for path in PACKAGE.rglob("*.py"):
        package = path.relative_to(PACKAGE.parent).parent.parts
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[:len(package) - (node.level - 1)]
                module = node.module.split(".") if node.module else []
                target = Path(PACKAGE.parent, *base, *module)
                if not (target.with_suffix(".py").is_file() or (target / "__init__.py")
                        .is_file()):
                    dangling.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not dangling
