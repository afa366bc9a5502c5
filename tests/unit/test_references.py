"""The TikTok contract is cited from one file in the repository, and every citation lands.

Code, messages and docs cite ``docs/tiktok-contract.md`` by section, as
``docs/tiktok-contract.md, "Section"`` (also ``("Section")``, ``'s "Section"``, a
``#anchor`` in a Markdown link, or an unquoted ``, Section)``), and never a file outside the
repository: a reference to notes nobody can open cannot be checked, and rots.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = "docs/tiktok-contract.md"
THIS_FILE = Path(__file__).resolve().relative_to(ROOT).as_posix()
# Spelled in two parts so that this file does not hold the name it looks for.
OUTSIDE_NOTES = "tiktok-api" + ".md"

# A citation may run over lines: a comment goes on with "#" or "#:", a message with the next
# string literal of an implicit concatenation.
_CONTINUATION = re.compile(r"\"\s*\n\s*\"|\n\s*(?:#:?|//|\*)?[ \t]*")
_QUOTED = re.compile(r'"([^"\n]+)"')
_CITATION = re.compile(
    r"tiktok-contract\.md(?:'s)?[`\s,(]+"
    r'(?P<quoted>"[^"\n]+"(?:(?:,? and |, )"[^"\n]+")*)'
    r"|tiktok-contract\.md#(?P<anchor>[\w-]+)"
    r"|tiktok-contract\.md, (?P<bare>[A-Z][a-z]+(?: [a-z]+)*)\)"
)


@cache
def tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, text=True
    ).stdout
    return [path for path in listed.split("\0") if path]


def text_of(path: str) -> str | None:
    try:
        return (ROOT / path).read_text("utf-8")
    except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
        return None  # binary, or removed from the work tree but not yet from the index


def headings() -> list[str]:
    text = (ROOT / CONTRACT).read_text("utf-8")
    return [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    kept = re.sub(r"[^\w\- ]", "", heading.lower())
    return kept.replace(" ", "-")


def cites_heading(name: str, heading: str) -> bool:
    """A section is cited by its heading, or by the heading's name before a ":" or "(" (so
    "Codes" cites "Codes (`tiktok-api` notes)")."""
    return heading == name or heading.startswith((f"{name} (", f"{name}:"))


def citations() -> list[tuple[str, str]]:
    """``(file, what it cites)`` for every section citation outside the contract itself;
    an anchor is cited as ``#anchor``."""
    found: list[tuple[str, str]] = []
    for path in tracked_files():
        if path in (CONTRACT, THIS_FILE):
            continue
        text = text_of(path)
        if text is None or "tiktok-contract.md" not in text:
            continue
        joined = _CONTINUATION.sub(" ", text)
        for match in _CITATION.finditer(joined):
            if match["quoted"]:
                found.extend((path, name) for name in _QUOTED.findall(match["quoted"]))
            elif match["anchor"]:
                found.append((path, "#" + match["anchor"]))
            else:
                found.append((path, match["bare"]))
    return found


def test_no_tracked_file_cites_notes_outside_the_repository() -> None:
    offending = [
        path
        for path in tracked_files()
        if path != THIS_FILE and OUTSIDE_NOTES in (text_of(path) or "")
    ]
    assert offending == [], (
        f"{', '.join(offending)} cite {OUTSIDE_NOTES}, which is not in the repository: cite "
        f'{CONTRACT} and the section instead ({CONTRACT}, "Section"), adding the fact and '
        "its source there"
    )


def test_every_cited_section_is_a_heading_of_the_contract() -> None:
    titles = headings()
    anchors = {slug(title) for title in titles}
    missing = [
        f"{path}: {name}"
        for path, name in citations()
        if not (
            name[1:] in anchors
            if name.startswith("#")
            else any(cites_heading(name, title) for title in titles)
        )
    ]
    assert missing == [], (
        f"these cite sections {CONTRACT} does not have (its headings: {'; '.join(titles)}): "
        + "; ".join(missing)
    )


def test_the_citation_forms_are_found() -> None:
    # The check above passes vacuously if no citation is recognized: these are known ones.
    cited = {name for _, name in citations()}
    assert {"Codes", "OAuth", "Identifier normalization before hashing"} <= cited


def test_a_missing_section_would_be_caught() -> None:
    titles = headings()
    assert not any(cites_heading("Cod", title) for title in titles)
    assert not any(cites_heading("No such section", title) for title in titles)
    assert "codes-tiktok-api-notes" in {slug(title) for title in titles}
