"""A report's HTML as terminal text (Rich): headings, paragraphs, list items and table rows.

``bonecast report`` prints this when no ``--out`` file is given, so the text is the same as the
HTML and PDF, wrapped by Rich to the terminal's width (never cut).
"""

from __future__ import annotations

from html.parser import HTMLParser

from rich.console import Group
from rich.text import Text

_BLOCKS = {"h1", "h2", "h3", "p", "li", "tr", "caption"}
_SKIPPED = {"style", "script", "title"}
_STYLES = {"h1": "bold underline", "h2": "bold", "h3": "bold", "caption": "bold"}


class _Blocks(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[tuple[str, str]] = []
        self._tag: str | None = None
        self._parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self._skip += 1
        elif tag in _BLOCKS:
            self._flush()
            self._tag = tag
        elif tag in ("td", "th") and self._parts:
            self._parts.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self._skip -= 1
        elif tag in _BLOCKS and tag == self._tag:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self._skip and self._tag is not None:
            self._parts.append(data)

    def _flush(self) -> None:
        text = " ".join("".join(self._parts).split())
        if self._tag is not None and text:
            self.blocks.append((self._tag, text))
        self._tag, self._parts = None, []


def html_text(html: str) -> Group:
    """The blocks of a report page as Rich text (one block per heading, paragraph, item, row)."""
    parser = _Blocks()
    parser.feed(html)
    parser.close()
    lines = []
    for tag, text in parser.blocks:
        prefix = "- " if tag == "li" else ""
        lines.append(Text(prefix + text, style=_STYLES.get(tag, "")))
        if tag in ("h1", "h2"):
            lines.insert(len(lines) - 1, Text(""))
    return Group(*lines)
