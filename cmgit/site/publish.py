"""The build: the SOP pages from ``site/`` and the generated pages, through
MkDocs-Material in-process, into a temporary folder; the output scan; and only then the
move into place, so that a failed build or a failed scan publishes nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import ids
from ..config import SCHEMAS_DIR
from ..errors import CmgitError, NotACaseRepository, UsageError
from ..history import Git
from ..progress import SILENT, Progress
from .reference import reference_pages
from .scan import check_output
from .source import open_source
from .statistics import report, statistics_page

SITE_DIR = "site"
MKDOCS_FILE = "mkdocs.yml"
DEFAULT_OUT = "site-build"
SHIM = "assets/javascripts/iframe-worker/shim.js"
STYLESHEET = "assets/stylesheets/cmgit.css"
# The pages written into the docs folder before MkDocs runs: the reference pages and the
# statistics page.
GENERATED_PAGES = (
    "reference/index.md",
    "reference/states.md",
    "reference/transitions.md",
    "reference/guards.md",
    "reference/forms.md",
    "statistics/index.md",
)


@dataclass
class BuildResult:
    out: Path
    commit: str
    pages: int
    files: int
    removed: int
    warnings: list[str]


def default_out(root: Path) -> Path:
    return root / DEFAULT_OUT


def build(
    directory: Path | None,
    out: Path | None,
    *,
    today: dt.date,
    progress: Progress = SILENT,
) -> BuildResult:
    """Build the site of the repository around ``directory`` into ``out``.

    The output appears only when the whole build has passed its checks: it is built in a
    temporary folder beside ``out`` and moved into place at the end.
    """
    source = open_source(directory)
    source.progress = progress
    root = source.root
    target = (out if out is not None else default_out(root)).absolute()
    _check_out(root, target)
    mkdocs_yml = root / MKDOCS_FILE
    docs_source = root / SITE_DIR
    if not mkdocs_yml.is_file() or not docs_source.is_dir():
        raise NotACaseRepository(
            f"no {MKDOCS_FILE} or {SITE_DIR}/ in the repository",
            hint="a case repository made by cmgit init has both",
        )
    dirty = bool(source.git.status(SITE_DIR, MKDOCS_FILE))
    with progress.task("Reading cases", 2) as advance:
        rep = report(source, today)
        advance(1)
        pages = reference_pages(source)
        pages["statistics/index.md"] = statistics_page(source, rep, today)
        advance(1)
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cmgit-site-")))
        docs = work / "docs"
        _copy_docs(docs_source, docs)
        for name, text in pages.items():
            path = docs / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        staging = Path(tempfile.mkdtemp(prefix=".cmgit-site-", dir=target.parent))
        stack.callback(shutil.rmtree, staging, True)
        footer = f"Built from commit {source.head[:12]}, figures as of {today.isoformat()}" + (
            ", with uncommitted changes to the SOP pages" if dirty else ""
        )
        with progress.task("Building the site", 1) as advance:
            warnings = run_mkdocs(mkdocs_yml, docs, staging, footer)
            advance(1)
        with progress.task("Checking the output", 1) as advance:
            removed = check_output(staging, set(source.column("case_id")))
            advance(1)
        files = sum(1 for p in staging.rglob("*") if p.is_file())
        html_pages = sum(1 for p in staging.rglob("*.html"))
        _replace(staging, target)
    _exclude_from_git(source.git, target)
    return BuildResult(target, source.head, html_pages, files, removed, warnings)


def _check_out(root: Path, target: Path) -> None:
    """Refuse an output folder whose replacement would destroy something else."""
    resolved = target.resolve()
    top = root.resolve()
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


def _copy_docs(source: Path, target: Path) -> None:
    """Copy the SOP pages and assets; links and special files are refused, not followed."""
    for dirpath, dirnames, filenames in os.walk(source, followlinks=False):
        here = Path(dirpath)
        rel = here.relative_to(source)
        (target / rel).mkdir(parents=True, exist_ok=True)
        for name in [*dirnames, *filenames]:
            info = os.lstat(here / name)
            if stat.S_ISLNK(info.st_mode):
                raise UsageError(
                    f"{SITE_DIR}/{(rel / name).as_posix()} is a symbolic link",
                    hint="the site is built from regular files only",
                )
            if name in filenames and not stat.S_ISREG(info.st_mode):
                raise UsageError(f"{SITE_DIR}/{(rel / name).as_posix()} is not a regular file")
        for name in filenames:
            shutil.copyfile(here / name, target / rel / name)


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


def run_mkdocs(config_file: Path, docs: Path, site_dir: Path, footer: str) -> list[str]:
    """The MkDocs-Material build, in-process, from the repository's mkdocs.yml.

    Three things are set here whatever mkdocs.yml says: the folders; the offline plugin,
    so that search works from files as well as over HTTP; and the iframe-worker shim it
    needs, from the vendored copy under site/assets/ (the plugin would otherwise add a
    CDN address). Every page's footer names the commit.
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
            owner = cfg["copyright"]
            cfg["copyright"] = f"{owner} · {footer}" if owner else footer
            mkdocs_build(cfg)
        except (MkDocsException, OSError, ValueError) as exc:
            raise CmgitError(
                f"the site build failed: {type(exc).__name__}",
                hint="run mkdocs build in the repository to see the details",
            ) from None
    return [m for m in log.messages if not m.startswith("Config value")]


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
