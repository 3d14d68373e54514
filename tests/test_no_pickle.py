"""No pickle on the load path: scan every source file under src/ (and the catalog's types).

The scan reads the code through Python's ``ast`` rather than grepping raw text, so prose
(docstrings and comments such as "never pickle" or "CIFAR-10's python-pickle batches")
does not count, while every way the code could reach pickle does:

* importing ``pickle`` or a pickle-based library (``_pickle``, ``cPickle``, ``dill``,
  ``cloudpickle``, ``joblib``, ``shelve``), also by name through ``importlib``/``__import__``;
* ``torch.load`` (or ``torch.serialization.load``, or ``load`` imported from torch)
  without ``weights_only=True``;
* ``allow_pickle=True`` (numpy), ``read_pickle``/``to_pickle`` (pandas), ``PickleDataset``.

One exception, only in ``src/supermask_pipeline/images/`` (CIFAR-10 ships as pickled
batches): a module may import pickle to subclass ``pickle.Unpickler`` with a
``find_class`` override (a restricted unpickler); there it may use only
``pickle.Unpickler`` and ``pickle.UnpicklingError``. Any Unpickler subclass anywhere must
override ``find_class``. Exactly one file uses the exception: ``images/cifar.py``, the
CIFAR-10 batch reader.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
RESTRICTED_UNPICKLER_DIR = "supermask_pipeline/images/"  # relative to src/, as posix
RESTRICTED_UNPICKLER_FILE = "supermask_pipeline/images/cifar.py"  # the CIFAR-10 batch reader
PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve"}
ALLOWED_PICKLE_NAMES = {"Unpickler", "UnpicklingError"}
FORBIDDEN_ATTRIBUTES = {"read_pickle", "to_pickle", "PickleDataset"}


def _dotted(node: ast.AST) -> str:
    """'torch.serialization.load' for an attribute chain on a name, '' otherwise."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _weights_only_true(call: ast.Call) -> bool:
    return any(
        kw.arg == "weights_only" and isinstance(kw.value, ast.Constant) and kw.value.value is True
        for kw in call.keywords
    )


def pickle_findings(source: str, relative: str) -> list[str]:
    """Every use of pickle in ``source`` (a file at ``relative``, posix, under src/) as 'line: what'."""
    tree = ast.parse(source)
    restricted_ok = relative.startswith(RESTRICTED_UNPICKLER_DIR)
    findings: list[str] = []
    pickle_aliases: set[str] = set()  # local names bound to a pickle module
    unpickler_aliases: set[str] = set()  # local names bound to pickle.Unpickler
    torch_load_aliases: set[str] = set()  # local names bound to torch.load

    def found(node: ast.AST, what: str) -> None:
        findings.append(f"{getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if set(parts) & PICKLE_MODULES:  # pickle, dill …, or kedro_datasets.pickle
                    pickle_aliases.add(alias.asname or parts[0])
                    if not (restricted_ok and alias.name == "pickle"):
                        found(node, f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            if set(node.module.split(".")) & PICKLE_MODULES:
                for alias in node.names:
                    if restricted_ok and node.module == "pickle" and alias.name in ALLOWED_PICKLE_NAMES:
                        if alias.name == "Unpickler":
                            unpickler_aliases.add(alias.asname or alias.name)
                    else:
                        found(node, f"from {node.module} import {alias.name}")
            for alias in node.names:
                if alias.name in FORBIDDEN_ATTRIBUTES or alias.name in PICKLE_MODULES:
                    found(node, f"from {node.module} import {alias.name}")
            if node.module in ("torch", "torch.serialization"):
                for alias in node.names:
                    if alias.name == "load":
                        torch_load_aliases.add(alias.asname or alias.name)

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            if node.attr in FORBIDDEN_ATTRIBUTES:
                found(node, f".{node.attr}")
            if isinstance(node.value, ast.Name) and node.value.id in pickle_aliases:
                if restricted_ok and node.attr in ALLOWED_PICKLE_NAMES:
                    if node.attr == "Unpickler":
                        unpickler_aliases.add(f"{node.value.id}.Unpickler")
                elif not restricted_ok and node.attr in ALLOWED_PICKLE_NAMES:
                    pass  # the import itself is already reported
                else:
                    found(node, f"{node.value.id}.{node.attr}")
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_ATTRIBUTES:
            found(node, node.id)
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if (name in ("torch.load", "torch.serialization.load") or name in torch_load_aliases) and not (
                _weights_only_true(node)
            ):
                found(node, f"{name}(...) without weights_only=True")
            for kw in node.keywords:
                if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    found(node, "allow_pickle not False")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in PICKLE_MODULES:
            found(node, f"module name {node.value!r} as a string (dynamic import?)")

    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = {_dotted(base) for base in node.bases}
            if bases & (unpickler_aliases | {"pickle.Unpickler"}):
                methods = {item.name for item in node.body if isinstance(item, ast.FunctionDef)}
                if "find_class" not in methods:
                    found(node, f"class {node.name} subclasses Unpickler without overriding find_class")
    return sorted(set(findings), key=lambda item: int(item.split(":")[0]) if item[0].isdigit() else 0)


def _python_files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_source_tree_is_scanned():
    files = [p.relative_to(SRC).as_posix() for p in _python_files()]
    assert "supermask_pipeline/datasets/safetensors_files.py" in files
    assert "supermask_pipeline/datasets/hdf5_split.py" in files
    assert RESTRICTED_UNPICKLER_FILE in files


def test_no_pickle_in_src():
    problems = {}
    for path in _python_files():
        relative = path.relative_to(SRC).as_posix()
        findings = pickle_findings(path.read_text(encoding="utf-8"), relative)
        if findings:
            problems[relative] = findings
    assert problems == {}, f"pickle on the load path: {problems}"


def _imports_pickle(tree: ast.AST) -> bool:
    return any(
        (isinstance(node, ast.Import) and any(alias.name.split(".")[0] == "pickle" for alias in node.names))
        or (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pickle")
        for node in ast.walk(tree)
    )


def test_the_restricted_unpickler_is_the_only_pickle_import():
    """The exception is used by exactly one file, the CIFAR-10 batch reader: it imports pickle,
    subclasses ``pickle.Unpickler`` overriding ``find_class``, and passes the scan there only."""
    importing = [
        path.relative_to(SRC).as_posix()
        for path in _python_files()
        if _imports_pickle(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert importing == [RESTRICTED_UNPICKLER_FILE]
    source = (SRC / RESTRICTED_UNPICKLER_FILE).read_text(encoding="utf-8")
    unpicklers = [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ClassDef) and "pickle.Unpickler" in {_dotted(base) for base in node.bases}
    ]
    assert unpicklers, f"no pickle.Unpickler subclass in {RESTRICTED_UNPICKLER_FILE}"
    for node in unpicklers:
        assert "find_class" in {item.name for item in node.body if isinstance(item, ast.FunctionDef)}
    assert pickle_findings(source, RESTRICTED_UNPICKLER_FILE) == []
    assert pickle_findings(source, "supermask_pipeline/datasets/cifar.py")  # refused outside images/


def test_no_pickle_in_other_src_files():
    """Non-Python files shipped in src/ (data, templates) must not carry pickles either.

    Skipped: bytecode caches and the git-ignored ``*.egg-info`` build metadata, which pip
    regenerates from the README (prose) at each editable install; neither is source.
    """
    for path in SRC.rglob("*"):
        skipped = "__pycache__" in path.parts or any(part.endswith(".egg-info") for part in path.parts)
        if path.is_file() and path.suffix not in (".py", ".pyc") and not skipped:
            assert path.suffix not in (".pkl", ".pickle", ".pt", ".pth", ".joblib"), path
            assert not re.search(r"(?i)pickle", path.read_text(encoding="utf-8", errors="replace")), path


def test_catalog_has_no_pickle_datasets():
    for path in sorted((REPO / "conf").rglob("*.yml")):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(?im)^\s*type:\s*\S*pickle", text), f"pickle-based dataset type in {path}"
        assert "backend: pickle" not in text, path


# --- the scanner itself finds what it must (else the tests above would pass vacuously) -----------


@pytest.mark.parametrize(
    "code",
    [
        "import pickle",
        "import pickle as p",
        "from pickle import loads",
        "import dill",
        "import joblib",
        "import torch\ntorch.load('x.pt')",
        "import torch\ntorch.load('x.pt', weights_only=False)",
        "from torch import load\nload('x.pt')",
        "import numpy as np\nnp.load('x.npy', allow_pickle=True)",
        "import pandas as pd\npd.read_pickle('x.pkl')",
        "import importlib\nimportlib.import_module('pickle')",
        "from kedro_datasets.pickle import PickleDataset",
        "from kedro_datasets import pickle",
        "import kedro_datasets.pickle",
    ],
)
def test_scanner_flags(code):
    assert pickle_findings(code, "supermask_pipeline/datasets/x.py")


@pytest.mark.parametrize(
    "code",
    [
        '"""Never pickle: CIFAR-10 ships python-pickle batches."""',
        "# pickle is not used\nx = 1",
        "import torch\ntorch.load('x.pt', weights_only=True)",
        "import numpy as np\nnp.load('x.npy')",
        "import safetensors.torch\nsafetensors.torch.load(b'')",
    ],
)
def test_scanner_allows(code):
    assert pickle_findings(code, "supermask_pipeline/datasets/x.py") == []


RESTRICTED = '''
import pickle

class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed")

def read(handle):
    return RestrictedUnpickler(handle, encoding="bytes").load()
'''


def test_restricted_unpickler_only_in_data_package():
    assert pickle_findings(RESTRICTED, RESTRICTED_UNPICKLER_FILE) == []
    assert pickle_findings(RESTRICTED, "supermask_pipeline/datasets/cifar.py")  # elsewhere: refused


@pytest.mark.parametrize(
    "code",
    [
        RESTRICTED + "\nx = pickle.loads(b'')",
        RESTRICTED.replace("find_class", "persistent_load"),
        "import pickle\nclass U(pickle.Unpickler):\n    pass",
        "from pickle import Unpickler\nclass U(Unpickler):\n    pass",
        "from pickle import load",
    ],
    ids=["loads-besides", "no-find-class", "plain-subclass", "imported-subclass", "from-import-load"],
)
def test_restricted_unpickler_rules(code):
    assert pickle_findings(code, RESTRICTED_UNPICKLER_FILE)
