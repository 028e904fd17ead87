"""Escaping, code spans, anchors and Markdown tables: the small pieces the generated
pages and the charts are written with."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def md_cell(text: object) -> str:
    """Text for a Markdown table cell: no pipes or line breaks, HTML escaped."""
    return esc(text).replace("|", "&#124;").replace("\n", " ")


def code(text: object) -> str:
    """A code span that a narrow table wraps only between the words of an identifier
    (after ``_``, ``.`` or ``/``), never inside one: the style sheet stops the breaks
    anywhere else in tables."""
    return "<code>" + _WORD_END.sub(r"\1<wbr>", esc(text)) + "</code>"


_WORD_END = re.compile(r"([_./])(?=.)")


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def anchor(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "-", name.lower())
