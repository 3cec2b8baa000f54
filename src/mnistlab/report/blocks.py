"""The report's content as data: a ``Document`` of sections, each a list of blocks.

``document.build`` makes one from the report's numbers; ``render`` and the Jinja2 templates in
``templates/`` turn the same blocks into REPORT.md and report.html, switching on ``kind``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar


@dataclass(frozen=True)
class Paragraph:
    kind: ClassVar[str] = "p"
    text: str


@dataclass(frozen=True)
class BulletList:
    kind: ClassVar[str] = "list"
    items: list[str]


@dataclass(frozen=True)
class Table:
    kind: ClassVar[str] = "table"
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Code:
    kind: ClassVar[str] = "code"
    text: str
    caption: str = ""


@dataclass(frozen=True)
class FigureBlock:
    """A PNG under the report folder (``path`` is relative to it), shown with its caption."""

    kind: ClassVar[str] = "figure"
    name: str
    path: str
    caption: str


Block = Paragraph | BulletList | Table | Code | FigureBlock


@dataclass(frozen=True)
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass(frozen=True)
class Document:
    title: str
    subtitle: str
    sections: list[Section]

    def figures(self) -> list[FigureBlock]:
        """Every figure block, in reading order."""
        return [b for s in self.sections for b in s.blocks if isinstance(b, FigureBlock)]
