"""`cmgit site build` and `cmgit stats` end to end, on a real repository with real cases
whose sealed forms carry CANARY strings: nothing personal, no case ID and no staff ID may
reach the published site, the build needs no key and no network, and a stray record
makes it fail without publishing anything."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from cmgit import entries, ids
from cmgit.audit import config_in_force
from cmgit.reports import Month
from cmgit.site import markup
from cmgit.site.monthly import PAGE as MONTHLY_PAGE
from cmgit.site.monthly import monthly_page, monthly_report
from cmgit.site.publish import GENERATED_PAGES
from cmgit.site.reference import reference_pages
from cmgit.site.scan import EXAMPLE_CASE_ID
from cmgit.site.source import open_source
from cmgit.site.statistics import report, statistics_page
from cmgit.stats import MIN_N_DERIVED

from .conftest import STAFF, Programme

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = {"html", "css", "js", "json", "svg", "png", "ico", "woff2", "xml", "txt", "map", "gz"}
CASE_ID = re.compile(r"[A-Z]{2,5}-[0-9A-HJKMNP-TV-Z]{8}")
DESTINATIONS = (
    "identified",
    "registered",
    "implementation",
    "closed_death",
    "post_closure_monitoring",
    "follow_up_review",
)
# External resources a page would fetch when viewed (links in text are fine).
FETCHES = re.compile(
    r"""<(?:script|img|iframe|source|embed)\b[^>]*\bsrc\s*=\s*["']?\s*(?:https?:)?//"""
    r"""|<link\b[^>]*\bhref\s*=\s*["']?\s*(?:https?:)?//"""
    r"""|url\(\s*["']?\s*(?:https?:)?//|@import\s+["']?(?:https?:)?//""",
    re.IGNORECASE,
)


def walk_cases(programme: Programme) -> list[str]:
    return [programme.walk(dest, seed=n + 1) for n, dest in enumerate(DESTINATIONS)]


def files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def text_of(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8", "replace")


def staff_ids_to_check() -> list[str]:
    """Staff IDs of the test programme; an ID the SOP pages use as an example is left out
    (the guide for coordinators shows `pm-001`)."""
    sources = " ".join(p.read_text(encoding="utf-8") for p in (ROOT / "site").rglob("*.md"))
    return [sid for sid, _, _ in STAFF if sid not in sources]


def build(programme: Programme, out: Path) -> tuple[int, str, str]:
    result = programme.cli("site", "build", "--out", str(out), as_=None)
    return result.exit_code, result.stdout, result.stderr


def test_site_build_publishes_no_case_data(programme: Programme, tmp_path: Path) -> None:
    cases = walk_cases(programme)
    head = programme.git("rev-parse", "HEAD").strip()
    out = tmp_path / "public"
    code, stdout, stderr = build(programme, out)
    assert code == 0, stdout + stderr
    assert head[:12] in stdout
    assert stderr == ""  # progress only on a terminal; no warnings from MkDocs
    published = files(out)
    names = {p.relative_to(out).as_posix() for p in published}
    assert {
        "index.html",
        "search/search_index.json",
        "search/search_index.js",
        "sitemap.xml",
        "statistics/index.html",
        "statistics/monthly.html",
        "reference/states.html",
    } <= names
    staff = staff_ids_to_check()
    assert "cw-north-1" in staff and "sv-north" in staff
    for path in published:
        rel = path.relative_to(out).as_posix()
        assert rel.rsplit(".", 1)[-1] in ALLOWED, rel
        text = text_of(path)
        assert "canary" not in text.lower(), rel
        for case_id in cases:
            assert case_id not in text, rel
        assert set(CASE_ID.findall(text)) <= {EXAMPLE_CASE_ID}, rel
        for sid in staff:
            assert not re.search(rf"(?<![A-Za-z0-9-]){re.escape(sid)}(?![A-Za-z0-9-])", text), (
                rel,
                sid,
            )
        assert "BEGIN AGE ENCRYPTED FILE" not in text and "age-encryption.org" not in text
        if rel.endswith((".html", ".css")):
            assert not FETCHES.search(text), rel
    for path in out.rglob("*.html"):
        assert head[:12] in path.read_text(encoding="utf-8"), path.name
    assert head in (out / "statistics" / "index.html").read_text(encoding="utf-8")
    monthly = (out / "statistics" / "monthly.html").read_text(encoding="utf-8")
    # The latest month that has ended before the day of the build (2026-04-01).
    assert "Monthly case report 2026-03" in monthly and head in monthly


def test_reference_pages_follow_the_workflow_and_schemas(
    programme: Programme, tmp_path: Path
) -> None:
    out = tmp_path / "public"
    code, stdout, stderr = build(programme, out)
    assert code == 0, stdout + stderr
    flow = yaml.safe_load((programme.root / "schemas" / "workflow.yaml").read_text())
    case_schema = json.loads((programme.root / "schemas" / "case.schema.json").read_text())
    transitions = (out / "reference" / "transitions.html").read_text(encoding="utf-8")
    for tid in flow["transitions"]:
        assert f'id="{tid.lower()}"' in transitions and f">{tid}<" in transitions, tid
    guards = (out / "reference" / "guards.html").read_text(encoding="utf-8")
    for code_ in flow["guards"]:
        assert f'id="{code_.lower()}"' in guards, code_
    states = (out / "reference" / "states.html").read_text(encoding="utf-8")
    assert states.count('class="cmgit-state"') == len(flow["states"])
    assert "<svg" in states and "<script" not in states.split("<svg", 1)[1].split("</svg>")[0]
    forms = (out / "reference" / "forms.html").read_text(encoding="utf-8")
    for name, prop in case_schema["properties"].items():
        assert markup.code(name) in forms, name
        if prop.get("x-cmgit-mode") not in (None, "system"):
            assert f'id="{name}"' in forms, name
    assert "personally identifying" in forms and "sealed" in forms
    # The SOP step pages link to the generated pages, and those links resolve.
    step = (out / "sop" / "step-6-closure.html").read_text(encoding="utf-8")
    assert 'href="../reference/transitions.html"' in step


def commit_pages(programme: Programme, message: str = "pages") -> str:
    """Commit site/ and mkdocs.yml as they are in the work tree, with plain git."""
    programme.git("add", "-A", "--", "site", "mkdocs.yml")
    programme.git("-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qm", message)
    return programme.git("rev-parse", "HEAD").strip()


def test_stray_record_fails_the_build_and_publishes_nothing(
    programme: Programme, tmp_path: Path
) -> None:
    case_id = programme.walk("implementation")
    out = tmp_path / "public"
    assert build(programme, out)[0] == 0
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in files(out)}
    start = programme.git("rev-parse", "HEAD").strip()
    # The files of the case: its open file, and a sealed entry (binary age).
    record = programme.root / ids.record_path(case_id)
    entry = programme.root / entries.entry_path(case_id, 1)
    for planted, copied in (
        ("site/sop/notes.yaml", record),
        ("site/attachments/copy.md", record),
        ("site/attachments/copy.pdf", entry),
    ):
        target = programme.root / planted
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(copied, target)
        commit_pages(programme)
        code, stdout, stderr = build(programme, out)
        assert code == 3, stdout + stderr
        assert "nothing was published" in stderr
        assert after_equal(out, before)
        fresh = tmp_path / "fresh"
        assert build(programme, fresh)[0] == 3
        assert not fresh.exists()
        programme.git("reset", "-q", "--hard", start)
    # An age message pasted into a page (the entry, armored as `age -a` writes it) is
    # caught too, whatever the file.
    lines = textwrap.wrap(base64.b64encode(entry.read_bytes()).decode("ascii"), 64)
    armored = "\n".join(
        ["-----BEGIN AGE ENCRYPTED FILE-----", *lines, "-----END AGE ENCRYPTED FILE-----\n"]
    )
    page = programme.root / "site" / "sop" / "glossary.md"
    page.write_text(page.read_text() + "\n```\n" + armored + "```\n")
    commit_pages(programme)
    code, _, stderr = build(programme, out)
    assert code == 3 and "age-encrypted" in stderr
    assert after_equal(out, before)


def after_equal(out: Path, before: dict[str, bytes]) -> bool:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in files(out)} == before


def test_output_folder_that_would_destroy_sources_is_refused(programme: Programme) -> None:
    for target in (programme.root, programme.root / "site", programme.root.parent):
        result = programme.cli("site", "build", "--out", str(target), as_=None)
        assert result.exit_code == 2, result.output
    assert (programme.root / "site" / "index.md").is_file()


def test_default_output_is_site_build_at_the_top(programme: Programme) -> None:
    result = programme.cli("site", "build", as_=None)
    assert result.exit_code == 0, result.output
    assert (programme.root / "site-build" / "index.html").is_file()
    assert programme.git("status", "--porcelain") == ""  # site-build/ is ignored by git


def test_stats_command_needs_no_key(programme: Programme) -> None:
    cases = walk_cases(programme)
    result = programme.cli("stats", "--json", as_=None)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["commit"] == programme.git("rev-parse", "HEAD").strip()
    assert doc["suppression_threshold"] == 5 and doc["small_programme"] is True
    assert all(1 <= len(t["dimensions"]) <= 2 for t in doc["tables"])
    open_cases = doc["tables"][0]
    assert open_cases["cells"] == [[5]]  # all but the closed one (death) are open
    text = programme.cli("stats", as_=None)
    assert text.exit_code == 0
    assert "Caseworkers by open caseload" in text.stdout
    for output in (result.stdout, text.stdout):
        assert not any(case_id in output for case_id in cases)
        assert not any(sid in output for sid in staff_ids_to_check())
        assert "CANARY" not in output


def test_statistics_page_shows_the_tables_of_a_larger_programme(
    programme: Programme, tmp_path: Path
) -> None:
    for n in range(21):
        programme.walk(("registered", "assessment", "implementation")[n % 3], seed=100 + n)
    out = tmp_path / "public"
    code, stdout, stderr = build(programme, out)
    assert code == 0, stdout + stderr
    page = (out / "statistics" / "index.html").read_text(encoding="utf-8")
    for title in (
        "Open cases by step and risk level",
        "Days spent in each state",
        "Registrations and closures by month",
        "Open cases by age band and sex",
    ):
        assert title in page
    assert page.count('<svg class="cmgit-chart"') >= 6
    assert "3 Case plan" in page or "4 Implement the plan" in page
    assert f"at least {MIN_N_DERIVED}" in page
    monthly = (out / "statistics" / "monthly.html").read_text(encoding="utf-8")
    # 21 cases open in March 2026: the month's tables are published, suppressed.
    assert "Cases active in the month by risk level and sex" in monthly
    assert "Cases active in the month: <strong>21</strong>" in monthly


def test_committed_mkdocs_yml_builds_with_the_generated_pages(tmp_path: Path) -> None:
    """The project's own mkdocs.yml and site/, with the generated pages written in, build
    with MkDocs alone and without a warning (strict)."""
    work = tmp_path / "project"
    shutil.copytree(ROOT / "site", work / "site")
    shutil.copy2(ROOT / "mkdocs.yml", work / "mkdocs.yml")
    source = open_source(ROOT, in_force=config_in_force)
    pages = reference_pages(source)
    pages["statistics/index.md"] = statistics_page(
        source, report(source, dt.date(2026, 4, 1)), dt.date(2026, 4, 1)
    )
    pages[MONTHLY_PAGE] = monthly_page(monthly_report(source, Month(2026, 3)))
    assert set(pages) == set(GENERATED_PAGES)
    for name, text in pages.items():
        (work / "site" / name).parent.mkdir(parents=True, exist_ok=True)
        (work / "site" / name).write_text(text, encoding="utf-8")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-q",
            "-f",
            str(work / "mkdocs.yml"),
            "-d",
            str(work / "out"),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "NO_MKDOCS_2_WARNING": "1", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (work / "out" / "reference" / "transitions.html").is_file()
    assert (work / "out" / "statistics" / "index.html").is_file()


def test_site_build_in_the_project_checkout(tmp_path: Path) -> None:
    """The template's own site builds too (no cases, default settings). Its history was
    not begun by cmgit init: there is no trust root, and HEAD's configuration is built,
    without a word about configuration changes audit would flag."""
    from click.testing import CliRunner

    from cmgit.cli import cli

    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        ["-C", str(ROOT), "site", "build", "--out", str(out)],
        env={"CMGIT_TODAY": "2026-04-01"},
    )
    assert result.exit_code == 0, result.output
    assert (out / "index.html").is_file() and (out / "statistics" / "index.html").is_file()
    assert "cmgit audit flags" not in result.output


def test_the_site_build_cannot_decrypt() -> None:
    """The site package reads git directly: none of its modules imports the store or the
    age adapter, and nothing they import does."""
    import ast

    package = ROOT / "cmgit"

    def file_of(module: str) -> Path | None:
        """The source file of a module of cmgit named like ``site.source``, if any."""
        path = package.joinpath(*module.split("."))
        if (path / "__init__.py").is_file():
            return path / "__init__.py"
        return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None

    def imported(module: str) -> set[str]:
        """What a module imports: modules of cmgit by their dotted name inside the package,
        with every package above them (whose __init__ runs first); anything else by its
        top-level name. A name imported from a module is listed too; it has no file."""
        path = file_of(module)
        assert path is not None, module
        here = ["cmgit", *module.split(".")]
        if path.name != "__init__.py":
            here.pop()
        dotted: list[list[str]] = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                dotted += [alias.name.split(".") for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                base += node.module.split(".") if node.module else []
                dotted += [[*base, alias.name] for alias in node.names]
        found = set()
        for parts in dotted:
            if parts[0] == "cmgit":
                found.update(".".join(parts[1:n]) for n in range(2, len(parts) + 1))
            else:
                found.add(parts[0])
        return found

    # Every module of the package, each walked from itself: one that __init__ does not import
    # may not decrypt either.
    modules = sorted(p.stem for p in (package / "site").glob("*.py") if p.stem != "__init__")
    todo = ["site", *(f"site.{name}" for name in modules)]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen or file_of(module) is None:
            continue
        seen.add(module)
        todo += imported(module)
    assert {"site", "site.source", "site.scan", "site.publish", "stats"} <= seen
    assert not {m.split(".")[0] for m in seen} & {"store", "crypto", "editing", "demo"}
    assert "pyrage" not in {m for mod in seen for m in imported(mod)}
