"""Where the case-repository template lives: the top level of a source checkout, or
inside the installed package (the wheel carries it as ``cmgit/_template``)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def template_root() -> Path:
    for root in (_PACKAGE.parent, _PACKAGE / "_template"):
        if (root / "schemas" / "case.schema.json").is_file():
            return root
    raise FileNotFoundError("the cmgit case-repository template is missing from this install")
