"""The README is a front door and docs/ cannot rot.

The README stays short and links every page; every relative link in the README and docs/
reaches a file and a heading that exist; the pages say what is, not what changed; only the
generated docs/performance.md quotes measured figures, and its generator renders from the
JSON the benches write (a fixture here), so ``make bench`` cannot silently stop producing it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.bench import write_performance

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
#: Kept as cited, not written by this project's hand: the TikTok contract's sources.
QUOTED = {"tiktok-contract.md"}
MAX_README_LINES = 200


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _written_pages(*generated: str) -> list[Path]:
    """The pages this project writes by hand (not the quoted contract, not ``generated``)."""
    return [p for p in _pages() if p.name not in QUOTED | set(generated)]


def _prose(path: Path) -> str:
    """The page without fenced code blocks (commands and SQL are not prose or links)."""
    return re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", _prose(path), flags=re.M)}


def _links(path: Path) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", _prose(path))


def test_the_readme_is_at_most_200_lines() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_README_LINES, (
        f"README.md has {lines} lines; keep it a front door (at most {MAX_README_LINES}) and "
        "move reference material into a page under docs/"
    )


def test_the_readme_links_every_docs_page() -> None:
    linked = {
        Path(link.split("#", 1)[0]).name for link in _links(README) if link.startswith("docs/")
    }
    pages = {p.name for p in DOCS.glob("*.md")}
    expected = {
        "configuration.md",
        "input-format.md",
        "operations.md",
        "architecture.md",
        "scale.md",
        "performance.md",
        "testing.md",
        "tiktok-contract.md",
    }
    assert expected <= pages, f"docs/ lacks {sorted(expected - pages)}"
    assert pages <= linked, f"README.md does not link {sorted(pages - linked)}"


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_every_relative_link_reaches_a_file_and_heading(page: Path) -> None:
    broken = []
    for link in _links(page):
        if re.match(r"[a-z]+:", link):
            continue  # http(s), mailto: not checked offline
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            broken.append(f"{link}: no file {path.relative_to(ROOT)}")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{link}: no heading #{anchor} in {path.relative_to(ROOT)}")
    assert not broken, f"{page.name}: broken links: {broken}"


#: Words that tell history ("was 10x before", "no longer", "used to"): a page says what is.
HISTORY = re.compile(
    r"\btoday\b|\bused to\b|\(was\b|\bwas [~\d]|\bas before\b|\byet\b|\bno longer goes\b"
    r"|\bbefore the (?:hashers|reader|phone fast path)\b",
    re.I,
)


@pytest.mark.parametrize("page", _written_pages(), ids=lambda p: p.name)
def test_pages_say_what_is_not_what_changed(page: Path) -> None:
    found = [
        f"line {n}: {line.strip()}"
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        if HISTORY.search(line)
    ]
    assert not found, f"{page.name} tells history; say what is: {found}"


#: A measured figure: microseconds, a ratio written as N times (the multiplication sign,
#: U+00D7), a throughput.
FIGURE = re.compile(r"\d\s?µs|\d(?:\.\d+)?\s?\u00d7|\brows/s\b|\bus/(?:row|member|value)\b")


@pytest.mark.parametrize("page", _written_pages("performance.md"), ids=lambda p: p.name)
def test_only_the_generated_page_quotes_measured_figures(page: Path) -> None:
    found = [
        f"line {n}: {line.strip()}"
        for n, line in enumerate(_prose(page).splitlines(), 1)
        if FIGURE.search(line)
    ]
    assert not found, (
        f"{page.name} quotes measured figures; link docs/performance.md (make bench) instead: "
        f"{found}"
    )


def test_the_committed_performance_page_is_generated_by_make_bench() -> None:
    text = (DOCS / "performance.md").read_text(encoding="utf-8")
    assert text.startswith(write_performance.GENERATED)
    assert "Produced by `make bench" in text


def _bench(results: Path, bench: str, figures: list[tuple[str, str, float, str]]) -> None:
    (results / f"{bench}.json").write_text(
        json.dumps(
            {
                "bench": bench,
                "title": f"The {bench} bench",
                "command": f"python tests/bench/bench_{bench}.py --tiny",
                "measured_at": "2026-12-08T03:00:00+00:00",
                "python": "3.12.1",
                "nproc": 2,
                "figures": [
                    {"figure": f, "at": at, "value": v, "unit": u} for f, at, v, u in figures
                ],
            }
        ),
        encoding="utf-8",
    )


def _make_bench_results(results: Path) -> None:
    """What make bench's six benches write, each with a figure or a few."""
    results.mkdir()
    _bench(results, "diff", [("diff CPU per member", "1,000 members", 2.0, "us")])
    _bench(
        results,
        "validate",
        [
            ("validate CPU per row", "1,000 rows", 3.0, "us"),
            ("validate CPU / bare SHA-256 of the same identifiers", "1,000 rows", 4.04, "x"),
            ("range planner CPU per row", "1,000 rows", 1.0, "us"),
            ("file size per row", "1,000 rows", 50.0, "bytes"),
            ("identifiers per row", "1,000 rows", 1.5, "identifiers"),
            ("throughput (wall)", "1,000 rows", 123456.7, "rows/s"),
        ],
    )
    _bench(results, "identifiers", [("identifier_hasher CPU / bare SHA-256", "email", 2, "x")])
    _bench(results, "sync_e2e", [("first sync: mapping calls", "1,000 rows", 1, "calls")])
    _bench(results, "export_parts", [("wall", "3 parts x 10 rows", 1.5, "s")])
    _bench(results, "rate_limit", [("answers of 40100 (must be 0)", "1 trials", 0, "answers")])


def _render(results: Path, out: Path, command: str) -> str:
    write_performance.main(["--command", command, "--results", str(results), "--out", str(out)])
    return out.read_text(encoding="utf-8")


def test_performance_page_renders_every_figure_and_the_projection(tmp_path: Path) -> None:
    results = tmp_path / "bench"
    _make_bench_results(results)

    text = _render(results, tmp_path / "performance.md", "make bench BENCH_ROWS=1000")

    assert text.startswith(write_performance.GENERATED)
    assert "Produced by `make bench BENCH_ROWS=1000`" in text
    assert "2026-12-08 03:00:00+00:00" in text and "2 CPUs, Python 3.12.1" in text
    # Sections in make bench's order, each with its own command and every figure.
    assert text.index("## The identifiers bench") < text.index("## The validate bench")
    assert text.index("## The validate bench") < text.index("## The diff bench")
    assert text.index("## The diff bench") < text.index("## The rate_limit bench")
    assert "`python tests/bench/bench_validate.py --tiny`" in text
    assert "| validate CPU / bare SHA-256 of the same identifiers | 1,000 rows | 4.04 x |" in text
    assert "| throughput (wall) | 1,000 rows | 123,457 rows/s |" in text
    assert "| identifier_hasher CPU / bare SHA-256 | email | 2 x |" in text
    # The projection multiplies the measured costs out: 10M rows of 50 bytes and 1.5
    # identifiers are 0.5 GB in 2 ranges of 256 MiB, 15M members, 1,500 mapping calls
    # (150 s at Basic's 10 QPS); the plan pass is 10 s, a 5M-row child 15 s, a shard of
    # 937,500 members diffed in 1.9 s.
    row = next(line for line in text.splitlines() if line.startswith("| 10M |"))
    assert row == (
        "| 10M | 0.5 GB | 2 (5.0M) | 10 s | 15 s | 15M | 2 s | 0.20 GiB | 1,500 | "
        "2.5 min / 75 s / 30 s |"
    )
    big = next(line for line in text.splitlines() if line.startswith("| 500M |"))
    assert "over Lambda's 10 GiB /tmp" in big


def test_a_later_bench_joins_the_page_with_its_command(tmp_path: Path) -> None:
    results = tmp_path / "bench"
    _make_bench_results(results)
    out = tmp_path / "performance.md"
    _render(results, out, "make bench RATE_TRIALS=1")
    _bench(results, "duckdb", [("diff, ours/DuckDB CPU", "1,000 members", 0.8, "x")])

    text = _render(results, out, "make bench-duckdb")

    assert "Produced by `make bench RATE_TRIALS=1` then `make bench-duckdb`" in text
    assert text.index("## The rate_limit bench") < text.index("## The duckdb bench")
    assert "| diff, ours/DuckDB CPU | 1,000 members | 0.80 x |" in text


def test_performance_page_is_rendered_whole_or_not_at_all(tmp_path: Path) -> None:
    results = tmp_path / "bench"
    _make_bench_results(results)
    (results / "rate_limit.json").unlink()
    out = tmp_path / "performance.md"

    with pytest.raises(SystemExit, match="no results of rate_limit"):
        _render(results, out, "make bench-duckdb")
    assert not out.exists()
