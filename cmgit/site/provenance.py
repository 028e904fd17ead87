"""Where each SOP page comes from, shown at its foot: the last commit that changed its
source file under ``site/`` (the day, and the staff ID cmgit wrote as that commit's
actor). The generated pages say instead, at their top, the commit whose workflow and
schemas they follow (`reference`).

One ``git log`` walk over ``site/`` finds every page's last change, however many
commits the history holds: git compares only the ``site`` folder's tree id of most
commits (case commits never touch it). Staff IDs only: a commit cmgit did not make names
no staff ID, and its author's name is never shown.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from .. import ids
from ..history import Git, parse_trailers
from .markup import esc

PAGE_SUFFIX = ".md"
CSS_CLASS = "cmgit-page-history"


@dataclass(frozen=True)
class PageChange:
    """The last commit that changed a page's source file."""

    commit: str
    day: str  # the author date's day, YYYY-MM-DD
    actor: str | None  # the staff ID in the commit's Cmgit-Actor trailer, if any


def last_changes(git: Git, head: str, folder: str) -> dict[str, PageChange]:
    """Of every file under ``folder`` at ``head`` (path relative to ``folder``), the last
    commit that changed it: one walk, newest first, each path's first sighting kept."""
    out = git.run(
        "log",
        "--no-renames",
        "--name-only",
        "-z",
        "--format=%x01%H%x02%aI%x02%B%x03",
        head,
        "--",
        folder,
    )
    prefix = folder.rstrip("/") + "/"
    found: dict[str, PageChange] = {}
    for piece in out.split(b"\x01")[1:]:
        header, _, names = piece.rpartition(b"\x03")
        fields = header.decode("utf-8", "replace").split("\x02", 2)
        if len(fields) != 3:
            continue
        oid, when, message = fields
        actor = parse_trailers(message).get("Cmgit-Actor", [None])[-1]
        change = PageChange(oid, when[:10], actor if _is_staff_id(actor) else None)
        for name in names.split(b"\0"):
            path = name.strip(b"\n").decode("utf-8", "surrogateescape")
            if path.startswith(prefix):
                found.setdefault(path[len(prefix) :], change)
    return found


def _is_staff_id(text: str | None) -> bool:
    return text is not None and ids.STAFF_ID_RE.fullmatch(text) is not None


def page_notes(
    pages: Collection[str],
    changes: Mapping[str, PageChange],
    *,
    head: str,
    generated: Collection[str],
    uncommitted: Collection[str] = (),
) -> dict[str, str]:
    """The HTML line at the foot of each SOP page (path relative to the docs folder): its
    last change, or, in a preview, not committed yet for one that differs from ``head``.
    Generated pages get none."""
    notes = {}
    for page in pages:
        if page in generated or not page.endswith(PAGE_SUFFIX):
            continue
        change = changes.get(page)
        if page in uncommitted or change is None:
            notes[page] = (
                f"Last change: not committed yet (this page differs from commit {head[:12]})."
            )
        elif change.actor is None:
            notes[page] = (
                f"Last changed on {change.day} in commit {change.commit[:12]}, "
                "not made by cmgit: no staff ID recorded."
            )
        else:
            notes[page] = (
                f"Last changed on {change.day} by {change.actor} (commit {change.commit[:12]})."
            )
    return {page: f'<p class="{CSS_CLASS}">{esc(text)}</p>' for page, text in notes.items()}
