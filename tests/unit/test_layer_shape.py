"""The layer's shape: AWS and HTTP only in ``adapters/``, no module a newcomer cannot read.

Beside ``test_layer_contents.py`` (what ships), these hold how the shipped code is cut:

- only modules under ``adapters/`` import boto3, botocore, requests or urllib3, so the
  domain (identity, inputs, validation, audiences, events, runs, config, oauth) can be read
  and tested without AWS or HTTP, and every call to them is in one folder;
- no layer module is over ``MAX_LINES`` lines: past that a module holds more than one idea.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "tiktok_destination" / "tiktok_destination"
ADAPTERS = PACKAGE / "adapters"

#: the SDKs of AWS and HTTP: only adapters/ may import them
ADAPTER_ONLY = frozenset({"boto3", "botocore", "requests", "urllib3"})
MAX_LINES = 600


def _imported_roots(source: str, filename: str) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in ``source``, nested ones too."""
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
    return found


def _adapter_imports_outside_adapters(package: Path) -> list[str]:
    hits = []
    for path in sorted(package.rglob("*.py")):
        if (package / "adapters") in path.parents:
            continue
        source = path.read_text(encoding="utf-8")
        hits += [
            f"{path.relative_to(package).as_posix()}:{line} imports {root}"
            for line, root in _imported_roots(source, str(path))
            if root in ADAPTER_ONLY
        ]
    return hits


def _long_modules(package: Path) -> list[str]:
    lengths = {
        path.relative_to(package).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in package.rglob("*.py")
    }
    return sorted(f"{name}: {n} lines" for name, n in lengths.items() if n > MAX_LINES)


def test_only_adapters_import_aws_or_http() -> None:
    assert ADAPTERS.is_dir()
    assert _adapter_imports_outside_adapters(PACKAGE) == [], (
        "AWS and HTTP calls belong in adapters/: add a function there and call it"
    )


def test_the_adapters_are_where_the_sdks_are_imported() -> None:
    # The rule above is only worth something if adapters/ really is where they are used.
    imported = {
        root
        for path in ADAPTERS.rglob("*.py")
        for _, root in _imported_roots(path.read_text(encoding="utf-8"), str(path))
    }
    assert {"boto3", "botocore", "requests"} <= imported


def test_no_layer_module_is_over_the_limit() -> None:
    assert _long_modules(PACKAGE) == [], f"split modules over {MAX_LINES} lines by what they hold"


@pytest.mark.parametrize(
    ("where", "source"),
    [
        ("identity/probe.py", "import boto3\n"),
        ("runs/probe.py", "from botocore.exceptions import ClientError\n"),
        ("events/probe.py", "def f():\n    import requests\n"),
        ("probe.py", "from urllib3.connection import HTTPConnection\n"),
    ],
)
def test_the_check_catches_an_sdk_import_outside_adapters(
    tmp_path: Path, where: str, source: str
) -> None:
    (tmp_path / "adapters").mkdir()
    (tmp_path / "adapters" / "fine.py").write_text("import boto3\n", encoding="utf-8")
    probe = tmp_path / where
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text(source, encoding="utf-8")

    hits = _adapter_imports_outside_adapters(tmp_path)

    assert len(hits) == 1 and hits[0].startswith(f"{where}:"), hits


def test_the_check_catches_a_long_module(tmp_path: Path) -> None:
    (tmp_path / "short.py").write_text("x = 1\n" * MAX_LINES, encoding="utf-8")
    (tmp_path / "long.py").write_text("x = 1\n" * (MAX_LINES + 1), encoding="utf-8")

    assert _long_modules(tmp_path) == [f"long.py: {MAX_LINES + 1} lines"]
