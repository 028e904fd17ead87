"""The committed configuration, cases and SOP pages of a repository, read with git alone.

Nothing here handles a key: the open fields of the records, the changes of state (from
the open state histories, or from the commits' trailers) and the programme's workflow,
schemas and settings are all readable without one.

Everything comes from one commit (HEAD's by default), never from the work tree, so a
page a user has not committed cannot reach the site, and the commit a page names is the
commit it was built from. Its configuration is the one in force there, as the audit
judges it: a change of the workflow, schemas, settings or staff that audit flags shapes
no page. The files are treated as hostile: a symbolic link or a submodule is refused
rather than followed, and so is a file too large or, for a text type, not UTF-8.
"""

from __future__ import annotations

import contextlib
import json
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import caches, reports, stats
from ..config import (
    PARTS,
    SCHEMAS_DIR,
    SETTINGS_FILE,
    STAFF_FILE,
    WORKFLOW_FILE,
    load_workflow,
    not_in_force,
    part_ids,
    read_document,
    read_parts,
)
from ..errors import CmgitError, InvalidRecord, NotACaseRepository, TooLarge, UsageError
from ..history import BLOB_MODES, Git
from ..progress import SILENT, Progress
from ..registry import CASEWORKER, Registry, settings_defaults
from ..schema import CASE, SETTINGS, STAFF, SchemaSet
from ..workflow import STATE_HISTORY, Workflow
from .scan import printable_path

SITE_DIR = "site"
MKDOCS_FILE = "mkdocs.yml"
# Larger than any page, stylesheet, script or image a SOP site needs.
MAX_SITE_FILE = 8 * 1024 * 1024
# File types read as text: MkDocs decodes them, so they must be UTF-8.
TEXT_TYPES = frozenset(
    {"md", "markdown", "yml", "yaml", "html", "htm", "css", "js", "json", "svg", "txt", "xml"}
)
# Which configuration is in force at a commit: the commit of each part (PARTS), and each
# part committed that is not in force, with the commit that changed it. The audit judges
# it (`cmgit.audit.config_in_force`); the caller hands it over, as the audit reads age
# headers and this package imports nothing of age.
InForce = Callable[[Git, str], tuple[Sequence[str], Mapping[str, str]]]
# Of all of them together: git compresses, so a small commit can hold files that would
# fill a disk when written out.
MAX_SITE_BYTES = 256 * 1024 * 1024
MAX_SITE_FILES = 10_000
SYMLINK_MODE = "120000"


def too_large(path: str) -> TooLarge:
    return TooLarge(
        f"{printable_path(path)} is larger than the site accepts ({MAX_SITE_FILE} bytes)",
        hint="keep large files out of site/",
    )


def check_site_totals(files: int, size: int) -> None:
    """Refuse a site of more files, or more bytes in all, than the build takes."""
    if files > MAX_SITE_FILES or size > MAX_SITE_BYTES:
        raise TooLarge(
            f"the site's files are more than the build accepts ({MAX_SITE_FILES} files, "
            f"{MAX_SITE_BYTES} bytes in all)",
            hint="keep large files out of site/",
        )


class UnusableSiteFile(InvalidRecord):
    """A file the site would be built from is a link, a submodule, too large or not UTF-8
    text: refused, never followed or guessed at (exit 3)."""


def check_site_file(path: str, data: bytes) -> None:
    """Refuse a page or asset of the site that is too large or, for a text type, not
    UTF-8 text."""
    if len(data) > MAX_SITE_FILE:
        raise too_large(path)
    if path.rsplit(".", 1)[-1].lower() in TEXT_TYPES:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise UnusableSiteFile(
                f"{printable_path(path)} is not UTF-8 text",
                hint="save the file as UTF-8 and commit it again",
            ) from None


@dataclass
class Source:
    """The committed configuration and cases of a repository, read with git alone."""

    git: Git
    head: str
    schemas: SchemaSet
    workflow: Workflow
    settings: dict[str, Any]
    caseworkers: list[str]
    # The commit of each part of the configuration read (PARTS), and the commits that
    # changed the configuration committed and that audit flags, left unread.
    config_sources: tuple[str, ...]
    flagged: tuple[str, ...]
    progress: Progress = SILENT
    _rows: list[tuple[Any, ...]] | None = field(default=None, repr=False)

    @property
    def root(self) -> Path:
        return self.git.root

    @property
    def config_warning(self) -> str | None:
        """Why the configuration committed at the commit is not the one read, if it is not."""
        problem = not_in_force(self.flagged)
        return None if problem is None else str(problem)

    @property
    def config_ids(self) -> tuple[str, ...]:
        """The objects of the configuration read: equal ids, equal configuration."""
        return part_ids(self.git, self.config_sources)

    @property
    def profile(self) -> str:
        name = str(self.settings.get("display_profile", "iag6"))
        return name if name in self.workflow.profiles else next(iter(self.workflow.profiles))

    @property
    def threshold(self) -> int:
        return int(self.settings.get("suppression_threshold", stats.DEFAULT_THRESHOLD))

    def rows(self) -> list[tuple[Any, ...]]:
        """Open fields of every case committed at HEAD, each a tuple in the schema's order;
        unreadable records are left out."""
        if self._rows is None:
            self._rows = caches.open_rows(
                self.git, self.head, self.schemas.open_fields, self.progress
            )
        return self._rows

    def write_files(self, paths: Sequence[str], target: Path) -> None:
        """Write the files at ``paths`` (files or folders) of the commit into ``target``,
        read from git's objects with one ``ls-tree`` and one ``cat-file --batch``."""
        entries = self.git.ls_tree(self.head, *paths)
        check_site_totals(len(entries), 0)
        for entry in entries:
            if entry.mode not in BLOB_MODES:
                kind = "a symbolic link" if entry.mode == SYMLINK_MODE else "not a regular file"
                raise UnusableSiteFile(
                    f"{printable_path(entry.path)} in commit {self.head[:12]} is {kind}",
                    hint="the site is built from regular files only: commit the file itself",
                )
            parts = entry.path.split("/")
            if any(part in ("", ".", "..") for part in parts):
                raise UnusableSiteFile(f"{printable_path(entry.path)}: not a usable path")
        blobs = self.git.stream_blobs([e.oid for e in entries], limit=MAX_SITE_FILE)
        written = 0
        for entry, (_, data) in zip(entries, blobs, strict=True):
            if data is None:
                size = self.git.text("cat-file", "-s", entry.oid, ok=(0, 128))
                if size.isdigit() and int(size) > MAX_SITE_FILE:
                    raise too_large(entry.path)
                raise UnusableSiteFile(f"{printable_path(entry.path)} cannot be read from git")
            check_site_file(entry.path, data)
            written += len(data)
            check_site_totals(len(entries), written)
            path = target.joinpath(*entry.path.split("/"))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    def column(self, name: str) -> list[Any]:
        at = self.schemas.open_fields.index(name)
        return [row[at] for row in self.rows()]

    def cases(self, fields: Sequence[str] = stats.CASE_FIELDS) -> list[dict[str, Any]]:
        """Of every case, the open ``fields`` the statistics read, by name (only those: a
        programme has 100,000 cases, and the mappings cost more than the figures)."""
        order = self.schemas.open_fields
        wanted = [name for name in fields if name in order]
        pick = operator.itemgetter(*(order.index(name) for name in wanted))
        return [dict(zip(wanted, pick(row), strict=True)) for row in self.rows()]

    @property
    def keeps_state_history(self) -> bool:
        return STATE_HISTORY in self.schemas.open_fields

    def changes(self) -> list[stats.Change]:
        """Every change of state of every case, each case under an opaque key: from the
        state histories in the open fields, or, for a schema that keeps none, from the
        commits' trailers in git's history."""
        if self.keeps_state_history:
            return stats.history_changes(self.column(STATE_HISTORY))
        return self.logged_changes()

    def logged_changes(self) -> list[stats.Change]:
        """Every change of state in the commits' trailers, oldest first, each case under an
        opaque key; then each imported case's one state, since its open state_since (an
        `import` commit adds cases with no `new` or `move` of their own)."""
        keys: dict[str, str] = {}
        found = []
        for case, when, source, target in caches.state_changes(self.git, self.head):
            day = stats.to_day(when)
            if day is not None:
                key = keys.setdefault(case, f"case-{len(keys) + 1}")
                found.append(stats.Change(key, day, source, target))
        wanted = ("case_id", "state", "state_since")
        imported = self.cases(wanted) if set(wanted) <= set(self.schemas.open_fields) else []
        for row in imported:
            day = stats.to_day(row["state_since"])
            if row["case_id"] not in keys and day is not None and row["state"]:
                key = keys.setdefault(row["case_id"], f"case-{len(keys) + 1}")
                found.append(stats.Change(key, day, None, row["state"]))
        return found

    def programme(self) -> stats.Programme:
        reasons = self.schemas.resolve("urn:cmgit:schema:common#/$defs/closure_reason")
        return reports.procedure(
            self.workflow,
            reasons.get("enum", ()),
            self.settings,
            self.caseworkers,
            self.profile,
        )


def open_source(directory: Path | None, commit: str | None = None, *, in_force: InForce) -> Source:
    """The repository around ``directory`` as of ``commit`` (a revision on the branch),
    by default HEAD, with the configuration in force there as ``in_force`` judges it."""
    git = Git.discover(directory or Path.cwd())
    head = git.head()
    if head is None:
        raise NotACaseRepository(
            "the repository has no commits yet", hint="run cmgit init DIR, or use -C DIR"
        )
    if commit is not None:
        head = commit_on_branch(git, commit, head)
    sources, flagged = configuration_in_force(git, head, in_force)
    with contextlib.suppress(CmgitError):  # the usual case: the whole configuration, remembered
        config = read_parts(git, sources)
        return Source(
            git,
            head,
            config.schemas,
            config.workflow,
            config.settings,
            [m.id for m in config.registry.active(CASEWORKER)],
            sources,
            flagged,
        )
    # A repository with parts of the configuration missing still gets its SOP pages.
    schemas_at, staff_at, settings_at = sources
    paths = [p for p in git.files_under(schemas_at, SCHEMAS_DIR) if p.endswith(".json")]
    files = (
        git.read_paths(schemas_at, [*paths, WORKFLOW_FILE])
        | git.read_paths(staff_at, [STAFF_FILE])
        | git.read_paths(settings_at, [SETTINGS_FILE])
    )
    docs = [json.loads(data) for p in paths if (data := files.get(p)) is not None]
    schemas = SchemaSet({doc["$id"]: doc for doc in docs if isinstance(doc, dict)})
    if CASE not in schemas.schemas or files.get(WORKFLOW_FILE) is None:
        raise NotACaseRepository(
            "not a cmgit case repository", hint="run cmgit init DIR, or use -C DIR"
        )
    settings_schema = schemas.schemas[SETTINGS]
    data = files.get(SETTINGS_FILE)
    settings = (
        settings_defaults(settings_schema)
        if data is None
        else read_document(data, schemas, SETTINGS, SETTINGS_FILE)
    )
    data = files.get(STAFF_FILE)
    registry = (
        None if data is None else Registry.from_doc(read_document(data, schemas, STAFF, STAFF_FILE))
    )
    caseworkers = [] if registry is None else [m.id for m in registry.active(CASEWORKER)]
    workflow = load_workflow(files.get(WORKFLOW_FILE), schemas)
    return Source(git, head, schemas, workflow, settings, caseworkers, sources, flagged)


def configuration_in_force(
    git: Git, head: str, in_force: InForce
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The commit of each part of the configuration (PARTS) in force at ``head``, and the
    commits that changed the one committed there and that audit flags.

    A history that cmgit did not begin (its first commit is no cmgit init: a checkout of
    cmgit's own source, say) has no trust root to judge from: there, the configuration
    is HEAD's, as committed.
    """
    as_committed = (head,) * len(PARTS)
    try:
        sources, flagged = in_force(git, head)
    except CmgitError:
        if begun_by_cmgit(git, head):
            raise
        return as_committed, ()
    if not flagged:
        return tuple(sources), ()
    if not begun_by_cmgit(git, head):
        return as_committed, ()
    return tuple(sources), tuple(dict.fromkeys(flagged.values()))


def begun_by_cmgit(git: Git, head: str) -> bool:
    """Whether the history of ``head`` begins with a cmgit init; a shallow clone, whose
    beginning is not there, is taken to (the audit trusts its oldest commit, as cmgit
    init's)."""
    if git.incomplete_history() == "shallow":
        return True
    root = git.text("rev-list", "--first-parent", "--max-parents=0", head).split()[-1]
    return git.log(rev=f"{root}^!")[0].trailer("Cmgit-Action") == "init"


def commit_on_branch(git: Git, rev: str, head: str) -> str:
    """The commit ``rev`` names, which must be HEAD or one of its ancestors."""
    found = (
        ""
        if rev.startswith("-")
        else git.text("rev-parse", "-q", "--verify", f"{rev}^{{commit}}", ok=(0, 1))
    )
    if not found:
        raise UsageError(
            "--commit names no commit of this repository",
            hint="give a commit id or a name such as HEAD~1 (git log lists them)",
        )
    if not git.is_ancestor(found, head):
        raise UsageError(
            f"commit {found[:12]} is not on the branch",
            hint="the site is built from the branch's own history only",
        )
    return found
