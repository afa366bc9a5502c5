"""The rejection reasons table (docs/input-format.md) can't drift from the code.

The reason codes are read from the source at test time (every ``RowRejected(...)``, every
helper that builds one from its argument, and the rows the offline-events steps write to a
rejects file themselves, as a tuple or through ``RowNames.reject``), so a code added
anywhere must be documented before the suite passes, and a documented code no longer
produced must leave the table.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.damaged_csv import documented_reason_codes, rejection_reasons_section
from tiktok_destination.identity.identifiers import COLUMNS

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    *sorted((ROOT / "layers/tiktok_destination/tiktok_destination").rglob("*.py")),
    *sorted((ROOT / "functions").rglob("*.py")),
]
# Functions whose f-string codes are over the identifier columns (invalid_idfa, ...).
IDENTIFIER_RULES = frozenset({"normalize_device_id", "_hash_trimmed"})
CODE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")


@dataclass
class Site:
    """An expression that is a reason code, and the function it is in (None: module)."""

    path: Path
    node: ast.expr
    function: ast.FunctionDef | None


def _params(function: ast.FunctionDef | None) -> list[str]:
    if function is None:
        return []
    args = function.args
    return [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]


def _name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else None


def _arg(call: ast.Call, index: int, keyword: str) -> ast.expr | None:
    if len(call.args) > index and not any(isinstance(a, ast.Starred) for a in call.args):
        return call.args[index]
    return next((k.value for k in call.keywords if k.arg == keyword), None)


def _walk(tree: ast.Module) -> Iterator[tuple[ast.AST, ast.FunctionDef | None]]:
    """Every node with the innermost function around it."""

    def visit(
        node: ast.AST, function: ast.FunctionDef | None
    ) -> Iterator[tuple[ast.AST, ast.FunctionDef | None]]:
        yield node, function
        inner = node if isinstance(node, ast.FunctionDef) else function
        for child in ast.iter_child_nodes(node):
            yield from visit(child, inner)

    yield from visit(tree, None)


class Scan:
    def __init__(self, paths: list[Path]):
        self.nodes: list[tuple[Path, ast.AST, ast.FunctionDef | None]] = []
        for path in paths:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            self.nodes.extend((path, node, fn) for node, fn in _walk(tree))
        self.calls = [(p, n, f) for p, n, f in self.nodes if isinstance(n, ast.Call)]
        #: function name -> (parameter index, name) that becomes a RowRejected reason code
        self.factories: dict[str, tuple[int, str]] = {"RowRejected": (1, "reason_code")}
        self._find_factories()

    def _find_factories(self) -> None:
        # A helper like _phone_rejected(reason_code, message) passes its parameter on.
        changed = True
        while changed:
            changed = False
            for _, call, function in self.calls:
                assert isinstance(call, ast.Call)
                target = self.factories.get(_name(call) or "")
                if target is None or function is None or function.name in self.factories:
                    continue
                code = _arg(call, *target)
                params = _params(function)
                if isinstance(code, ast.Name) and code.id in params:
                    self.factories[function.name] = (params.index(code.id), code.id)
                    changed = True

    def sites(self) -> Iterator[Site]:
        for path, call, function in self.calls:
            assert isinstance(call, ast.Call)
            name = _name(call)
            target = self.factories.get(name or "")
            if target is not None:
                code = _arg(call, *target)
                # A factory's own pass-through call is covered at the factory's call sites.
                if code is not None and not (
                    isinstance(code, ast.Name) and code.id in _params(function)
                ):
                    yield Site(path, code, function)
            if name in ("writerow", "writerows"):
                # Rows written straight into a rejects file: (row, column, reason_code, reason),
                # or through RowNames.reject(row, column, reason_code, reason).
                for node in ast.walk(call):
                    fields = (
                        node.elts
                        if isinstance(node, ast.Tuple)
                        else node.args
                        if isinstance(node, ast.Call) and _name(node) == "reject"
                        else []
                    )
                    if len(fields) == 4 and isinstance(fields[2], ast.Constant | ast.JoinedStr):
                        yield Site(path, fields[2], function)

    def values(self, node: ast.expr, function: ast.FunctionDef | None, depth: int = 0) -> set[str]:
        """The strings ``node`` can be; empty when they cannot be told from the source."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, ast.JoinedStr):
            options = {""}
            for part in node.values:
                if isinstance(part, ast.Constant):
                    options = {o + str(part.value) for o in options}
                    continue
                assert isinstance(part, ast.FormattedValue)
                parts = self.values(part.value, function, depth)
                if not parts and function is not None and function.name in IDENTIFIER_RULES:
                    # The identifier rules name the identifier's column: invalid_{column}.
                    parts = set(COLUMNS.values())
                if not parts:
                    return set()
                options = {o + p for o in options for p in parts}
            return options
        if isinstance(node, ast.Name) and node.id in _params(function) and depth < 5:
            assert function is not None
            index = _params(function).index(node.id)
            found: set[str] = set()
            for _, call, caller in self.calls:
                assert isinstance(call, ast.Call)
                if _name(call) == function.name:
                    arg = _arg(call, index, node.id)
                    if arg is not None:
                        found |= self.values(arg, caller, depth + 1)
            return found
        return set()

    def codes(self) -> dict[str, str]:
        """Every reason code -> where it is made (file:line)."""
        out: dict[str, str] = {}
        for site in self.sites():
            values = self.values(site.node, site.function)
            where = f"{site.path.relative_to(ROOT)}:{site.node.lineno}"
            assert values, (
                f"{where}: cannot tell the reason code from the source; write it as a literal, "
                "or pass it as a literal argument to the function that builds the RowRejected"
            )
            for value in values:
                if CODE.fullmatch(value):
                    out.setdefault(value, where)
        return out


@functools.cache
def scanned() -> dict[str, str]:
    return Scan(SOURCES).codes()


def test_the_scan_finds_codes_of_every_kind() -> None:
    # Literal, through a helper, an f-string over call sites or identifier columns, and rows
    # written straight into a rejects file: if the scan missed a kind, this would show it.
    assert {
        "unterminated_quote",
        "phone_extension",
        "invalid_price",
        "invalid_value",
        "invalid_idfa",
        "invalid_aaid",
        "duplicate_row",
        "tiktok_rejected",
        "no_identifier",
    } <= set(scanned()), sorted(scanned())


def test_every_reason_code_in_the_code_is_in_the_reasons_table() -> None:
    missing = {
        code: where for code, where in scanned().items() if code not in documented_reason_codes()
    }
    assert not missing, (
        f"reason codes missing from docs/input-format.md's 'Rejection reasons' table "
        f"(code | column | meaning): {missing}"
    )


def test_every_code_in_the_reasons_table_is_still_produced() -> None:
    stale = documented_reason_codes() - set(scanned())
    assert not stale, (
        f"docs/input-format.md's 'Rejection reasons' table lists codes nothing produces: {stale}"
    )


def test_every_table_row_names_a_column_and_a_meaning() -> None:
    rows = [line for line in rejection_reasons_section().splitlines() if line.startswith("| `")]
    assert rows
    for line in rows:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == 3 and all(cells), (
            f"reasons table row needs code | column | meaning: {line}"
        )
