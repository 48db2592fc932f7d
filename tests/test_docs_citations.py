"""Every citation of the model or clinical documentation in the code resolves to a page of
docs/ and a heading that carries the cited section number."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NUMBERS = r"[0-9]+(?:\.[0-9]+)?"
CITATION = re.compile(
    rf"docs/(?P<doc>model|clinical)/(?P<page>[\w-]+)\.md"
    rf"(?: sections? (?P<numbers>{NUMBERS}(?:(?:-|–| and |, | to ){NUMBERS})*))?"
)
OLD_STYLE = re.compile(r"(?<![\w/])(?:model|clinical)\.md\b")
HEADING = re.compile(rf"^#{{1,6}} (?P<number>{NUMBERS})\.?\s", re.MULTILINE)
TEXT_SUFFIXES = {".py", ".yaml", ".yml", ".json", ".csv", ".md", ".html", ".txt"}


def _sources() -> list[Path]:
    roots = [ROOT / "src", ROOT / "tests", ROOT / "docs"]
    return sorted(
        path
        for root in roots
        for path in root.rglob("*")
        if path.suffix in TEXT_SUFFIXES and "__pycache__" not in path.parts
    )


def _citations() -> list[tuple[str, str, str, str]]:
    """(file, page, numbers, text) of every citation."""
    found = []
    for path in _sources():
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in CITATION.finditer(text):
            page = f"docs/{m['doc']}/{m['page']}.md"
            found.append((str(path.relative_to(ROOT)), page, m["numbers"] or "", m[0]))
    return found


def _sections(page: str) -> set[str]:
    return {m["number"] for m in HEADING.finditer((ROOT / page).read_text(encoding="utf-8"))}


def test_the_code_cites_the_documentation_many_times() -> None:
    in_code = [c for c in _citations() if c[0].startswith("src/")]
    assert len(in_code) > 300  # docstrings, comments and parameter sources


@pytest.mark.parametrize("citation", _citations(), ids=lambda c: f"{c[0]}: {c[3]}")
def test_every_citation_resolves_to_a_page_and_section(citation: tuple[str, str, str, str]) -> None:
    source, page, numbers, _ = citation
    assert (ROOT / page).is_file(), f"{source} cites {page}, which does not exist"
    missing = set(re.findall(NUMBERS, numbers)) - _sections(page)
    assert not missing, f"{source} cites sections {sorted(missing)} that {page} does not have"


def test_no_citation_of_the_specifications_outside_the_repository_is_left() -> None:
    left = [
        f"{path.relative_to(ROOT)}: {m[0]}"
        for path in _sources()
        if path.parts[len(ROOT.parts)] != "docs"
        for m in OLD_STYLE.finditer(path.read_text(encoding="utf-8", errors="replace"))
    ]
    assert not left, left[:10]
