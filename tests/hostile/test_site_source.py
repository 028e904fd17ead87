"""The site is built from a commit, never from the work tree (issue 14, point 5), and every
file it reads from the repository is treated as hostile.

Uncommitted pages carry canary strings; the built output, search index included, must hold
none of them, and the footer must name the commit actually read. A preview of the work
tree says so on every page and never lands where the site is published. Committed links,
oversized or non-UTF-8 files and a mkdocs.yml that would run code or read the building
machine's files are refused, publishing nothing and changing nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cmgit import errors
from cmgit.site import source

from ..conftest import Programme
from ..test_site_build import build, commit_pages, files, text_of
from .refusal import assert_refused, snapshot

PREVIEW_BANNER = "Preview of uncommitted pages — not published"
SITE = "site"


def published_text(out: Path) -> str:
    """Every published file as text, the search index and compressed files included."""
    return "\n".join(text_of(path) for path in files(out))


def plant_uncommitted(programme: Programme) -> dict[str, str]:
    """A new draft page, a stray text file, an edited page, an edited mkdocs.yml and a
    staged page, none committed; each with its own canary."""
    root = programme.root
    canaries = {
        "draft": "CANARY-DRAFT-NOTES",
        "notes": "CANARY-NOTES-TXT",
        "edited": "CANARY-EDITED-PAGE",
        "title": "CANARY-SITE-NAME",
        "staged": "CANARY-STAGED-PAGE",
    }
    (root / SITE / "sop" / "draft-notes.md").write_text(
        f"# Draft notes\n\nMet the family of {canaries['draft']} today.\n"
    )
    (root / SITE / "notes.txt").write_text(f"call back {canaries['notes']}\n")
    glossary = root / SITE / "sop" / "glossary.md"
    glossary.write_text(glossary.read_text() + f"\n\nAlso: {canaries['edited']}\n")
    mkdocs_yml = root / "mkdocs.yml"
    mkdocs_yml.write_text(
        mkdocs_yml.read_text().replace(
            'site_name: "cmgit: case management SOPs"', f'site_name: "{canaries["title"]}"'
        )
    )
    (root / SITE / "sop" / "staged.md").write_text(f"# Staged\n\n{canaries['staged']}\n")
    programme.git("add", "--", f"{SITE}/sop/staged.md")
    return canaries


def test_uncommitted_pages_never_reach_the_site(programme: Programme, tmp_path: Path) -> None:
    head = programme.git("rev-parse", "HEAD").strip()
    canaries = plant_uncommitted(programme)
    # The reference pages come from the commit's workflow too.
    workflow = programme.root / "schemas" / "workflow.yaml"
    summary = "The child has come to the agency's attention; not yet registered."
    assert summary in workflow.read_text()
    canaries["workflow"] = "CANARY-WORKFLOW-SUMMARY"
    workflow.write_text(workflow.read_text().replace(summary, canaries["workflow"]))
    out = tmp_path / "public"
    code, stdout, stderr = build(programme, out)
    assert code == 0, stdout + stderr
    assert f"from commit {head[:12]}" in stdout
    assert "uncommitted changes to site/ or mkdocs.yml are not in the site" in stderr
    text = published_text(out)
    assert (out / "search" / "search_index.json").is_file()
    for name, canary in canaries.items():
        assert canary not in text, name
    assert not (out / "sop" / "draft-notes.html").exists()
    assert not (out / "notes.txt").exists()
    assert PREVIEW_BANNER not in text
    assert "not yet registered" in (out / "reference" / "states.html").read_text(encoding="utf-8")
    for page in out.rglob("*.html"):
        assert f"Built from commit {head[:12]}" in page.read_text(encoding="utf-8"), page.name


def test_committed_pages_are_published_and_the_footer_names_their_commit(
    programme: Programme, tmp_path: Path
) -> None:
    page = programme.root / SITE / "sop" / "draft-notes.md"
    page.write_text("# Notes\n\nFIRST-VERSION-OF-THE-PAGE\n")
    first = commit_pages(programme, "first")
    page.write_text("# Notes\n\nSECOND-VERSION-OF-THE-PAGE\n")
    second = commit_pages(programme, "second")
    out = tmp_path / "public"
    code, stdout, stderr = build(programme, out)
    assert code == 0, stdout + stderr
    text = published_text(out)
    assert "SECOND-VERSION-OF-THE-PAGE" in text and "FIRST-VERSION" not in text
    assert f"Built from commit {second[:12]}" in (out / "index.html").read_text()
    # --commit builds an earlier commit of the branch, and says which.
    result = programme.cli("site", "build", "--out", str(out), "--commit", first, as_=None)
    assert result.exit_code == 0, result.output
    assert f"from commit {first[:12]}" in result.stdout
    text = published_text(out)
    assert "FIRST-VERSION-OF-THE-PAGE" in text and "SECOND-VERSION" not in text
    for html in out.rglob("*.html"):
        assert f"Built from commit {first[:12]}" in html.read_text(encoding="utf-8"), html.name
    assert first in (out / "statistics" / "index.html").read_text(encoding="utf-8")


def test_commit_option_takes_only_a_commit_on_the_branch(
    programme: Programme, tmp_path: Path
) -> None:
    tree = programme.git("rev-parse", "HEAD^{tree}").strip()
    elsewhere = programme.git(
        "-c", "user.name=x", "-c", "user.email=x@x", "commit-tree", tree, "-m", "aside"
    ).strip()
    out = tmp_path / "public"
    for rev, says in (
        (elsewhere, f"commit {elsewhere[:12]} is not on the branch"),
        ("no-such-revision", "--commit names no commit of this repository"),
        ("--all", "--commit names no commit of this repository"),
        (tree, "--commit names no commit of this repository"),
    ):
        before = snapshot(programme)
        result = programme.cli("site", "build", "--out", str(out), "--commit", rev, as_=None)
        assert_refused(programme, result, errors.USAGE, before, says=says)
        assert not out.exists()


def test_preview_builds_the_work_tree_and_says_so_on_every_page(programme: Programme) -> None:
    head = programme.git("rev-parse", "HEAD").strip()
    canaries = plant_uncommitted(programme)
    result = programme.cli("site", "build", "--preview", as_=None)
    assert result.exit_code == 0, result.output
    assert "Built a preview of the uncommitted pages" in result.stdout
    assert "not for publication" in result.stdout
    out = programme.root / "site-preview"
    text = published_text(out)
    for canary in canaries.values():
        assert canary in text
    pages = list(out.rglob("*.html"))
    assert len(pages) > 20
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert html.count(PREVIEW_BANNER) >= 2, page.name  # the banner and the footer
        assert f"on commit {head[:12]}" in html, page.name
    assert not (programme.root / "site-build").exists()
    assert programme.git("status", "--porcelain", "--", "site-preview") == ""


def test_preview_is_never_written_where_the_site_is_published(
    programme: Programme, tmp_path: Path
) -> None:
    plant_uncommitted(programme)
    published = programme.root / "site-build"
    elsewhere = tmp_path / "public"
    assert programme.cli("site", "build", as_=None).exit_code == 0
    assert build(programme, elsewhere)[0] == 0
    for out in (published, elsewhere, programme.root / "." / "site-build"):
        before = {p.relative_to(out).as_posix(): p.read_bytes() for p in files(out)}
        state = snapshot(programme)
        result = programme.cli("site", "build", "--preview", "--out", str(out), as_=None)
        assert_refused(programme, result, errors.USAGE, state, says="preview")
        assert {p.relative_to(out).as_posix(): p.read_bytes() for p in files(out)} == before
    # Any other folder takes a preview, and a preview replaces an earlier preview.
    for _ in range(2):
        result = programme.cli(
            "site", "build", "--preview", "--out", str(tmp_path / "preview"), as_=None
        )
        assert result.exit_code == 0, result.output
    state = snapshot(programme)
    result = programme.cli("site", "build", "--preview", "--commit", "HEAD", as_=None)
    assert_refused(programme, result, errors.USAGE, state, says="--preview")


def commit_and_refuse(
    programme: Programme, tmp_path: Path, says: str, code: int = errors.INVALID_RECORD
) -> None:
    """Commit site/ and mkdocs.yml as they are; the build then fails with CODE, saying
    SAYS, publishes nothing and changes nothing."""
    commit_pages(programme, "hostile")
    out = tmp_path / "public"
    before = snapshot(programme)
    result = programme.cli("site", "build", "--out", str(out), as_=None)
    assert_refused(programme, result, code, before, says=says)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cmgit-")]


def test_committed_symbolic_links_are_not_followed(programme: Programme, tmp_path: Path) -> None:
    secret = tmp_path / "outside.md"
    secret.write_text("# Outside\n\nCANARY-OUTSIDE-THE-TREE\n")
    start = programme.git("rev-parse", "HEAD").strip()
    for link, target in (
        (f"{SITE}/sop/outside.md", str(secret)),
        (f"{SITE}/sop/records", "../../records"),
        (f"{SITE}/sop/up.md", "../../schemas/workflow.yaml"),
    ):
        os.symlink(target, programme.root / link)
        commit_and_refuse(programme, tmp_path, says="is a symbolic link")
        programme.git("reset", "-q", "--hard", start)
    # mkdocs.yml itself as a link.
    real = programme.root / "mkdocs.yml"
    (programme.root / SITE / "mkdocs.yml").write_bytes(real.read_bytes())
    real.unlink()
    os.symlink(f"{SITE}/mkdocs.yml", real)
    commit_and_refuse(programme, tmp_path, says="mkdocs.yml in commit")


def test_a_link_in_the_work_tree_is_not_followed_by_a_preview(
    programme: Programme, tmp_path: Path
) -> None:
    secret = tmp_path / "outside.md"
    secret.write_text("# Outside\n\nCANARY-OUTSIDE-THE-TREE\n")
    os.symlink(secret, programme.root / SITE / "sop" / "outside.md")
    before = snapshot(programme)
    result = programme.cli("site", "build", "--preview", as_=None)
    assert_refused(programme, result, errors.INVALID_RECORD, before, says="is a symbolic link")
    assert not (programme.root / "site-preview").exists()


def test_oversized_and_non_utf8_site_files_are_refused(
    programme: Programme, tmp_path: Path
) -> None:
    start = programme.git("rev-parse", "HEAD").strip()
    big = programme.root / SITE / "sop" / "big.txt"
    big.write_bytes(b"a" * (8 * 1024 * 1024 + 1))
    commit_and_refuse(programme, tmp_path, says="larger than the site accepts")
    programme.git("reset", "-q", "--hard", start)
    (programme.root / SITE / "sop" / "latin1.md").write_bytes(b"# Caf\xe9\n")
    commit_and_refuse(programme, tmp_path, says="site/sop/latin1.md is not UTF-8 text")
    # A binary asset is not text: it is taken as it is.
    programme.git("reset", "-q", "--hard", start)
    (programme.root / SITE / "sop" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    commit_pages(programme, "logo")
    out = tmp_path / "public"
    assert build(programme, out)[0] == 0
    assert (out / "sop" / "logo.png").is_file()


def test_mkdocs_yml_that_would_run_code_or_read_files_is_refused(
    programme: Programme, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    start = programme.git("rev-parse", "HEAD").strip()
    (programme.root / SITE / "hook.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n", encoding="utf-8"
    )
    mkdocs_yml = programme.root / "mkdocs.yml"
    original = mkdocs_yml.read_text()
    for text, says in (
        (original + "hooks:\n  - site/hook.py\n", "hooks"),
        (original + f"site_author: !!python/object/apply:os.system ['touch {marker}']\n", "tags"),
        (original + "site_author: !ENV [HOME, nobody]\n", "tags are not allowed"),
        (original + "INHERIT: /etc/mkdocs.yml\n", "INHERIT"),
        (
            original.replace(
                "markdown_extensions:\n",
                "markdown_extensions:\n  - pymdownx.snippets:\n      base_path: /\n",
            ),
            "pymdownx.snippets",
        ),
        (original.replace("theme:\n", "theme:\n  custom_dir: /etc\n"), "custom_dir"),
        (
            original.replace("  - search\n", "  - search\n  - material/info\n"),
            "plugin material/info",
        ),
        (
            original.replace("  - search\n", "  - projects:\n      projects_dir: /\n"),
            "plugin projects",
        ),
    ):
        mkdocs_yml.write_text(text, encoding="utf-8")
        commit_and_refuse(programme, tmp_path, says=says)
        assert not marker.exists()
        programme.git("reset", "-q", "--hard", start)


def test_a_site_too_large_in_all_is_refused(
    programme: Programme, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """git compresses: a commit of a few kilobytes can hold files that fill a disk when
    written out. The totals are lowered here so that the test writes megabytes, not
    gigabytes; the files are real and committed."""
    site = programme.root / SITE
    size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    count = sum(1 for p in site.rglob("*") if p.is_file()) + 1  # and mkdocs.yml
    monkeypatch.setattr(source, "MAX_SITE_BYTES", size + 1024 * 1024)
    monkeypatch.setattr(source, "MAX_SITE_FILES", count + 2)
    start = programme.git("rev-parse", "HEAD").strip()
    for name in ("a.txt", "b.txt"):
        (site / name).write_bytes(b"a" * (600 * 1024))
    commit_and_refuse(programme, tmp_path, says="more than the build accepts")
    before = snapshot(programme)
    result = programme.cli("site", "build", "--preview", as_=None)
    assert_refused(programme, result, errors.INVALID_RECORD, before, says="more than the build")
    programme.git("reset", "-q", "--hard", start)
    for name in ("a.md", "b.md", "c.md"):
        (site / name).write_text(f"# {name}\n")
    commit_and_refuse(programme, tmp_path, says="more than the build accepts")
