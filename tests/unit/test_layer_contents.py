"""The Lambda layer holds only what Lambda runs (issue 10.3).

``sam build`` copies the layer's ContentUri whole, so any file there ships to every
function. The CLI, the moto runner, the emulator and the samples live in the local tooling
package (``local/tiktok_destination_local/``) instead: this test lists the layer directory
against an explicit allow-list, and checks that no layer module or handler imports the
tooling. A new runtime module is added to RUNTIME_FILES on purpose, in review.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "tiktok_destination"
PACKAGE = LAYER / "tiktok_destination"

#: every file of the layer directory, relative to it: the domain, the AWS adapters, the
#: TikTok client, and the requirements sam build installs next to them
RUNTIME_FILES = frozenset(
    {
        "requirements.txt",
        "tiktok_destination/__init__.py",
        "tiktok_destination/adapters/__init__.py",
        "tiktok_destination/adapters/metrics.py",
        "tiktok_destination/adapters/notifications.py",
        "tiktok_destination/adapters/observability.py",
        "tiktok_destination/adapters/rate_limit.py",
        "tiktok_destination/adapters/s3.py",
        "tiktok_destination/adapters/s3_ranges.py",
        "tiktok_destination/adapters/secrets.py",
        "tiktok_destination/adapters/step_functions.py",
        "tiktok_destination/adapters/tiktok/__init__.py",
        "tiktok_destination/adapters/tiktok/bodies.py",
        "tiktok_destination/adapters/tiktok/client.py",
        "tiktok_destination/adapters/tiktok/codes.py",
        "tiktok_destination/adapters/tiktok/limits.py",
        "tiktok_destination/adapters/tiktok/names.py",
        "tiktok_destination/adapters/tiktok/send_gate.py",
        "tiktok_destination/adapters/tiktok/transport.py",
        "tiktok_destination/audiences/__init__.py",
        "tiktok_destination/audiences/commit.py",
        "tiktok_destination/audiences/diff.py",
        "tiktok_destination/audiences/ensure.py",
        "tiktok_destination/audiences/guard.py",
        "tiktok_destination/audiences/plan.py",
        "tiktok_destination/audiences/send.py",
        "tiktok_destination/audiences/shards.py",
        "tiktok_destination/config/__init__.py",
        "tiktok_destination/config/document.py",
        "tiktok_destination/config/fields.py",
        "tiktok_destination/config/loader.py",
        "tiktok_destination/config/references.py",
        "tiktok_destination/config/resolved.py",
        "tiktok_destination/config/settings.py",
        "tiktok_destination/config/tables.py",
        "tiktok_destination/errors.py",
        "tiktok_destination/events/__init__.py",
        "tiktok_destination/events/build.py",
        "tiktok_destination/events/plan.py",
        "tiktok_destination/events/rules.py",
        "tiktok_destination/events/send.py",
        "tiktok_destination/identity/__init__.py",
        "tiktok_destination/identity/column_hashing.py",
        "tiktok_destination/identity/columns.py",
        "tiktok_destination/identity/device_ids.py",
        "tiktok_destination/identity/emails.py",
        "tiktok_destination/identity/hashing.py",
        "tiktok_destination/identity/phone_fast_path.py",
        "tiktok_destination/identity/phones.py",
        "tiktok_destination/identity/schema.py",
        "tiktok_destination/inputs/__init__.py",
        "tiktok_destination/inputs/csv_damage.py",
        "tiktok_destination/inputs/csv_lines.py",
        "tiktok_destination/inputs/csv_reader.py",
        "tiktok_destination/inputs/exports.py",
        "tiktok_destination/inputs/formats.py",
        "tiktok_destination/inputs/parquet_reader.py",
        "tiktok_destination/inputs/ranges.py",
        "tiktok_destination/inputs/readers.py",
        "tiktok_destination/inputs/rows.py",
        "tiktok_destination/oauth/__init__.py",
        "tiktok_destination/oauth/callback.py",
        "tiktok_destination/oauth/link.py",
        "tiktok_destination/oauth/page.py",
        "tiktok_destination/oauth/state.py",
        "tiktok_destination/py.typed",
        "tiktok_destination/runs/__init__.py",
        "tiktok_destination/runs/layout.py",
        "tiktok_destination/runs/leases.py",
        "tiktok_destination/runs/preflight.py",
        "tiktok_destination/runs/report.py",
        "tiktok_destination/runs/run.py",
        "tiktok_destination/runs/starts.py",
        "tiktok_destination/runs/workflow_actions.py",
        "tiktok_destination/sorting.py",
        "tiktok_destination/steps.py",
        "tiktok_destination/validation/__init__.py",
        "tiktok_destination/validation/audience_rows.py",
        "tiktok_destination/validation/event_rows.py",
        "tiktok_destination/validation/file_rules.py",
        "tiktok_destination/validation/headers.py",
        "tiktok_destination/validation/range_outputs.py",
        "tiktok_destination/validation/result.py",
        "tiktok_destination/validation/row_loop.py",
    }
)

#: the tooling's packages: importing one from the layer would need it in the layer
TOOLING = ("tiktok_destination_local", "moto", "yaml")

# What a Python process leaves behind in a checkout; sam build does not copy caches.
_CACHES = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}


def _files_under(directory: Path) -> set[str]:
    found = set()
    for here, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if d not in _CACHES]
        for name in files:
            if not name.endswith(".pyc"):
                found.add((Path(here) / name).relative_to(directory).as_posix())
    return found


def _tooling_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [
            f"{path.name}:{node.lineno} {name}" for name in names if name.split(".")[0] in TOOLING
        ]
    return found


def test_the_template_builds_the_layer_from_this_directory() -> None:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    text = (ROOT / "template.yaml").read_text(encoding="utf-8")
    template = yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader that drops !Ref & co
    layers = [
        r["Properties"]["ContentUri"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Serverless::LayerVersion"
    ]
    assert [(ROOT / uri).resolve() for uri in layers] == [LAYER]


def test_the_layer_directory_holds_only_runtime_files() -> None:
    shipped = _files_under(LAYER)
    assert sorted(shipped - RUNTIME_FILES) == [], (
        "not runtime code: move it to local/tiktok_destination_local/ (or, if Lambda runs "
        "it, add it to RUNTIME_FILES)"
    )
    assert sorted(RUNTIME_FILES - shipped) == []


def test_the_allow_list_names_no_local_tooling() -> None:
    tooling = {"emulator", "runner", "state_dir", "cli", "__main__", "samples", "schedules"}
    named = [f for f in RUNTIME_FILES if tooling & {*Path(f).parent.parts, Path(f).stem}]
    assert named == []


def test_no_layer_module_or_handler_imports_the_tooling() -> None:
    sources = sorted(PACKAGE.rglob("*.py")) + sorted((ROOT / "functions").rglob("*.py"))
    assert len(sources) > len(RUNTIME_FILES)  # the layer's modules and the handlers
    offending = [hit for path in sources for hit in _tooling_imports(path)]
    assert offending == []


def test_the_import_check_would_catch_the_tooling(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from tiktok_destination_local.emulator import TikTokEmulator\n"
        "import tiktok_destination_local.runner\n"
        "from moto import mock_aws\n"
        "def later():\n"
        "    from tiktok_destination_local.cli import main\n"
        "from tiktok_destination.errors import FatalError\n"
        "from .config import load_config\n",
        encoding="utf-8",
    )
    assert len(_tooling_imports(probe)) == 4
