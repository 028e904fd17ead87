"""The build: mkdocs.yml and the SOP pages of ``site/`` from a commit, and the generated
pages, through MkDocs-Material in-process, into a temporary folder; the output scan; and
only then the move into place, so that a failed build or a failed scan publishes nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import ids, yamlio
from ..config import MAX_CONFIG_BYTES, SCHEMAS_DIR
from ..errors import CmgitError, NotACaseRepository, UsageError
from ..history import Git
from ..progress import SILENT, Progress
from .directory import DIRECTORY_PAGE
from .monthly import PAGE as MONTHLY_PAGE
from .monthly import monthly_page, monthly_report, site_month
from .provenance import last_changes, page_notes
from .reference import reference_pages
from .scan import check_front_matter, check_output, printable_path
from .source import (
    MAX_SITE_FILE,
    MKDOCS_FILE,
    SITE_DIR,
    InForce,
    Source,
    UnusableSiteFile,
    check_site_file,
    check_site_totals,
    open_source,
    too_large,
)
from .statistics import report, statistics_page

DEFAULT_OUT = "site-build"
PREVIEW_OUT = "site-preview"
PREVIEW_BANNER = "Preview of uncommitted pages — not published"
# Above everything else on every page of a preview.
PREVIEW_HTML = (
    '<div class="cmgit-preview" role="alert" style="background:#b71c1c;color:#fff;'
    'padding:.6em 1em;font-weight:bold;text-align:center">' + PREVIEW_BANNER + "</div>"
)
_BODY_TAG = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
# What mkdocs.yml may not set: Python files MkDocs would run, and another file to read.
REFUSED_SETTINGS = ("hooks", "INHERIT")
# Markdown extensions that read files named in a page, from outside the commit.
REFUSED_EXTENSIONS = ("pymdownx.snippets", "pymdownx.b64", "markdown_include.include")
# The plugins mkdocs.yml may name; others read the project's folders (info, projects),
# fetch from the web (privacy, social) or run other programs (optimize).
ALLOWED_PLUGINS = frozenset({"search", "offline", "tags", "meta", "blog", "typeset"})
SHIM = "assets/javascripts/iframe-worker/shim.js"
STYLESHEET = "assets/stylesheets/cmgit.css"
# The pages written into the docs folder before MkDocs runs: the reference pages, the
# statistics page and the public monthly report of the latest month that has ended.
GENERATED_PAGES = (
    "reference/index.md",
    "reference/states.md",
    "reference/transitions.md",
    "reference/guards.md",
    "reference/forms.md",
    DIRECTORY_PAGE,
    "statistics/index.md",
    MONTHLY_PAGE,
)


@dataclass
class BuildResult:
    out: Path
    commit: str
    pages: int
    files: int
    removed: int
    warnings: list[str]
    preview: bool = False


def default_out(root: Path) -> Path:
    return root / DEFAULT_OUT


def preview_out(root: Path) -> Path:
    return root / PREVIEW_OUT


def build(
    directory: Path | None,
    out: Path | None,
    *,
    today: dt.date,
    in_force: InForce,
    commit: str | None = None,
    preview: bool = False,
    progress: Progress = SILENT,
) -> BuildResult:
    """Build the site of the repository around ``directory`` into ``out``.

    Every input comes from one commit, HEAD's unless ``commit`` names another on the
    branch: mkdocs.yml and the pages of site/ are read from git's objects, never from the
    work tree. A ``preview`` takes mkdocs.yml and site/ from the work tree instead, says
    so on every page, and is never written where the site is published. The
    configuration (workflow, schemas, settings, staff) is the one in force at that commit,
    as ``in_force`` judges it (`cmgit.audit.config_in_force`).

    The output appears only when the whole build has passed its checks: it is built in a
    temporary folder beside ``out`` and moved into place at the end.
    """
    if preview and commit is not None:
        raise UsageError(
            "--preview builds the pages of the work tree and takes no --commit",
            hint="build a commit without --preview",
        )
    source = open_source(directory, commit, in_force=in_force)
    source.progress = progress
    root = source.root
    target = (
        out if out is not None else (preview_out if preview else default_out)(root)
    ).absolute()
    _check_out(root, target, preview=preview)
    warnings = [] if source.config_warning is None else [source.config_warning]
    if not preview and source.git.status(SITE_DIR, MKDOCS_FILE):
        warnings.append(
            f"uncommitted changes to {SITE_DIR}/ or {MKDOCS_FILE} are not in the site "
            "(commit them, or look at them with cmgit site build --preview)"
        )
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cmgit-site-")))
        if preview:
            _copy_work_tree(root, work)
        else:
            source.write_files([MKDOCS_FILE, SITE_DIR], work)
        mkdocs_yml, docs = work / MKDOCS_FILE, work / SITE_DIR
        if not mkdocs_yml.is_file() or not docs.is_dir():
            raise NotACaseRepository(
                f"no {MKDOCS_FILE} or {SITE_DIR}/ in "
                + ("the work tree" if preview else f"commit {source.head[:12]}"),
                hint="a case repository made by cmgit init has both",
            )
        check_mkdocs_config(mkdocs_yml.read_bytes())
        check_front_matter(docs, set(source.column("case_id")))
        with progress.task("Reading cases", 2) as advance:
            rep = report(source, today)
            advance(1)
            pages = reference_pages(source)
            pages["statistics/index.md"] = statistics_page(source, rep, today)
            pages[MONTHLY_PAGE] = monthly_page(monthly_report(source, site_month(today)))
            advance(1)
        for name, text in pages.items():
            path = docs / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        notes = _page_notes(source, docs, preview=preview)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".cmgit-site-", dir=target.parent))
        stack.callback(shutil.rmtree, staging, True)
        built = f"commit {source.head[:12]}, figures as of {today.isoformat()}"
        footer = f"{PREVIEW_BANNER}, on {built}" if preview else f"Built from {built}"
        with progress.task("Building the site", 1) as advance:
            warnings += run_mkdocs(mkdocs_yml, docs, staging, footer, notes)
            if preview:
                _mark_preview(staging)
            advance(1)
        with progress.task("Checking the output", 1) as advance:
            removed = check_output(staging, set(source.column("case_id")))
            advance(1)
        files = sum(1 for p in staging.rglob("*") if p.is_file())
        html_pages = sum(1 for p in staging.rglob("*.html"))
        _replace(staging, target)
    _exclude_from_git(source.git, target)
    return BuildResult(target, source.head, html_pages, files, removed, warnings, preview)


def _page_notes(source: Source, docs: Path, *, preview: bool) -> dict[str, str]:
    """The line at the foot of each SOP page: its last change, from one walk of the
    history of site/ at the commit built; in a preview, "not committed yet" for a page
    the work tree has changed."""
    prefix = SITE_DIR + "/"
    uncommitted = (
        [path.removeprefix(prefix) for path in source.git.status(SITE_DIR)] if preview else []
    )
    return page_notes(
        [path.relative_to(docs).as_posix() for path in docs.rglob("*") if path.is_file()],
        last_changes(source.git, source.head, SITE_DIR),
        head=source.head,
        generated=GENERATED_PAGES,
        uncommitted=uncommitted,
    )


def _check_out(root: Path, target: Path, *, preview: bool) -> None:
    """Refuse an output folder whose replacement would destroy something else, and, for a
    preview, the folder the site is published to or any that holds a published build."""
    resolved = target.resolve()
    top = root.resolve()
    if preview and resolved == default_out(top).resolve():
        raise UsageError(
            "a preview is never written to the folder the site is published to",
            hint=f"leave out --out (a preview goes to {PREVIEW_OUT}/) or choose another folder",
        )
    index = resolved / "index.html"
    if preview and index.is_file() and PREVIEW_BANNER not in _head_of(index):
        raise UsageError(
            "the output folder holds a published site build; a preview never replaces it",
            hint=f"leave out --out (a preview goes to {PREVIEW_OUT}/) or choose another folder",
        )
    forbidden = [top, top / SITE_DIR, top / ".git", top / ids.RECORDS_DIR, top / SCHEMAS_DIR]
    if (
        resolved in forbidden
        or resolved in top.parents
        or any(f in resolved.parents for f in forbidden[1:])
    ):
        raise UsageError(
            "the output folder would overwrite the repository or its sources",
            hint=f"use a new folder such as {DEFAULT_OUT}/",
        )
    if target.is_symlink() or resolved.exists():
        if target.is_symlink() or not resolved.is_dir():
            raise UsageError("the output path exists and is not a folder")
        if any(resolved.iterdir()) and not (resolved / "index.html").is_file():
            raise UsageError(
                "the output folder is not empty and holds no earlier site build",
                hint="choose a new or empty folder",
            )


def _head_of(page: Path) -> str:
    with page.open("rb") as handle:
        return handle.read(1 << 16).decode("utf-8", "replace")


def _mark_preview(site_dir: Path) -> None:
    """Put the preview banner at the top of every page."""
    for page in site_dir.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        body = _BODY_TAG.search(text)
        at = body.end() if body else 0
        page.write_text(text[:at] + PREVIEW_HTML + text[at:], encoding="utf-8")


def check_mkdocs_config(data: bytes) -> None:
    """Refuse a mkdocs.yml that would run code or read files beyond the pages: MkDocs
    parses it with YAML tags on (``!ENV`` reads the environment, ``!!python/...`` runs
    code), runs the files under ``hooks``, reads the file ``INHERIT`` names and the theme
    folder ``custom_dir`` names, and some Markdown extensions read any file a page names.
    """
    doc = yamlio.load(data, what=MKDOCS_FILE, max_bytes=MAX_CONFIG_BYTES)  # no tags
    if not isinstance(doc, dict):
        raise UnusableSiteFile(f"{MKDOCS_FILE} is not a mapping of settings")
    refused = [key for key in REFUSED_SETTINGS if key in doc]
    theme = doc.get("theme")
    folder = theme.get("custom_dir") if isinstance(theme, dict) else None
    if folder is not None and not _inside(folder):
        refused.append("theme.custom_dir outside the repository")
    refused += [name for name in REFUSED_EXTENSIONS if name in _names(doc, "markdown_extensions")]
    refused += [
        f"plugin {printable_path(name)}"
        for name in _names(doc, "plugins")
        if name.removeprefix("material/") not in ALLOWED_PLUGINS
    ]
    if refused:
        raise UnusableSiteFile(
            f"{MKDOCS_FILE} uses what the site build does not allow: {', '.join(refused)}",
            hint="these run code or read files from outside the commit; "
            f"remove them from {MKDOCS_FILE} and commit it",
        )


def _names(doc: dict[str, Any], key: str) -> list[str]:
    """The names in a list of plugins or extensions: each a name, or a mapping of a name
    to its options; or the names of one mapping."""
    items = doc.get(key) or []
    if isinstance(items, dict):
        return [str(name) for name in items]
    if not isinstance(items, list):
        return []
    return [str(name) for item in items for name in (item if isinstance(item, dict) else [item])]


def _inside(folder: object) -> bool:
    """Whether a folder named in mkdocs.yml stays inside the folder of mkdocs.yml."""
    text = str(folder).replace("\\", "/")
    return (
        bool(text) and not text.startswith("/") and ":" not in text and ".." not in text.split("/")
    )


def _exclude_from_git(git: Git, target: Path) -> None:
    """An output folder inside the work tree goes into the clone's own exclude list
    (.git/info/exclude, never committed), so the built site is not committed by accident.
    """
    try:
        rel = target.resolve().relative_to(git.root.resolve()).as_posix()
    except ValueError:
        return
    line = f"/{rel}/"
    exclude = git.git_dir / "info" / "exclude"
    try:
        present = exclude.read_text(encoding="utf-8").splitlines() if exclude.exists() else []
        if line not in present:
            exclude.parent.mkdir(parents=True, exist_ok=True)
            with exclude.open("a", encoding="utf-8") as handle:
                if present and present[-1] != "":
                    handle.write("\n")
                handle.write(line + "\n")
    except OSError:
        pass  # only a convenience: the build itself has succeeded


def _copy_work_tree(root: Path, work: Path) -> None:
    """For a preview: mkdocs.yml and site/ as the work tree has them, each file checked as
    a committed one is; links and special files are refused, not followed."""
    found, files = [MKDOCS_FILE], 1
    for dirpath, dirnames, filenames in os.walk(root / SITE_DIR, followlinks=False):
        here = Path(dirpath).relative_to(root)
        found += [(here / name).as_posix() for name in [*dirnames, *filenames]]
        files += len(filenames)
        check_site_totals(files, 0)
    written = 0
    for rel in found:
        try:
            info = os.lstat(root / rel)
        except FileNotFoundError:
            continue  # no mkdocs.yml: the build says what is missing
        if stat.S_ISDIR(info.st_mode):
            continue
        if not stat.S_ISREG(info.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
            raise UnusableSiteFile(
                f"{printable_path(rel)} is {kind}", hint="the site is built from regular files only"
            )
        if info.st_size > MAX_SITE_FILE:
            raise too_large(rel)
        try:  # O_NOFOLLOW: a file swapped for a link since lstat is refused, not followed
            fd = os.open(root / rel, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            raise UnusableSiteFile(f"{printable_path(rel)} cannot be read") from None
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(MAX_SITE_FILE + 1)
        check_site_file(rel, data)
        written += len(data)
        check_site_totals(files, written)
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_bytes(data)


def _replace(staging: Path, target: Path) -> None:
    """Move the checked build into place; an earlier build is replaced whole."""
    os.chmod(staging, 0o755)  # noqa: S103 - a published web site is world-readable
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=".cmgit-old-", dir=target.parent))
        os.replace(target, old / "site")
        try:
            os.replace(staging, target)
        except OSError:
            os.replace(old / "site", target)
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)


# -- MkDocs, run in-process --------------------------------------------------------------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _quiet_mkdocs() -> Iterator[_Collect]:
    logger = logging.getLogger("mkdocs")
    saved = (logger.handlers[:], logger.propagate, logger.level)
    handler = _Collect()
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    previous = os.environ.get("NO_MKDOCS_2_WARNING")
    os.environ["NO_MKDOCS_2_WARNING"] = "1"
    try:
        yield handler
    finally:
        logger.handlers, logger.propagate, level = saved
        logger.setLevel(level)
        if previous is None:
            os.environ.pop("NO_MKDOCS_2_WARNING", None)


def run_mkdocs(
    config_file: Path,
    docs: Path,
    site_dir: Path,
    footer: str,
    notes: Mapping[str, str] | None = None,
) -> list[str]:
    """The MkDocs-Material build, in-process, from the repository's mkdocs.yml.

    Three things are set here whatever mkdocs.yml says: the folders; the offline plugin,
    so that search works from files as well as over HTTP; and the iframe-worker shim it
    needs, from the vendored copy under site/assets/ (the plugin would otherwise add a
    CDN address). Every page's footer names the commit, and each page in ``notes`` (by
    its path in the docs folder) ends with its HTML line there.
    """
    from mkdocs.commands.build import build as mkdocs_build
    from mkdocs.config import load_config
    from mkdocs.exceptions import MkDocsException

    with _quiet_mkdocs() as log:
        try:
            with config_file.open("rb") as handle:
                cfg = load_config(
                    handle,
                    config_file_path=str(config_file),
                    docs_dir=str(docs),
                    site_dir=str(site_dir),
                )
            polyfills = [
                p for p in cfg.extra.get("polyfills", []) or [] if "iframe-worker" not in str(p)
            ]
            if (docs / SHIM).is_file():
                polyfills.append(SHIM)
                _add_offline(cfg)
            cfg.extra["polyfills"] = polyfills
            if (docs / STYLESHEET).is_file() and STYLESHEET not in [str(s) for s in cfg.extra_css]:
                cfg.extra_css.append(STYLESHEET)
            if notes:
                cfg.plugins["cmgit/page-notes"] = _notes_plugin(notes)
            owner = cfg["copyright"]
            cfg["copyright"] = f"{owner} · {footer}" if owner else footer
            mkdocs_build(cfg)
        except (MkDocsException, OSError, ValueError) as exc:
            raise CmgitError(
                f"the site build failed: {type(exc).__name__}",
                hint="run mkdocs build in the repository to see the details",
            ) from None
    return [m for m in log.messages if not m.startswith("Config value")]


def _notes_plugin(notes: Mapping[str, str]) -> Any:
    """A plugin that ends each page's content with its line from ``notes``, after the
    Markdown is rendered, so no page's own Markdown (an unclosed code block, say) can
    swallow it."""
    from mkdocs.plugins import BasePlugin

    class PageNotes(BasePlugin):  # type: ignore[type-arg,no-untyped-call]
        def on_page_content(self, html: str, /, *, page: Any, **_: Any) -> str:
            note = notes.get(page.file.src_uri)
            return html if note is None else f"{html}\n{note}"

    return PageNotes()


def _add_offline(cfg: Any) -> None:
    if any(name.endswith("offline") for name in cfg.plugins):
        return
    try:
        from material.plugins.offline.plugin import (  # type: ignore[import-untyped]
            OfflinePlugin,
        )
    except ImportError:  # pragma: no cover - another theme: search then needs HTTP
        return
    plugin = OfflinePlugin()
    errors, _ = plugin.load_config({})
    if not errors:
        cfg.plugins["material/offline"] = plugin
