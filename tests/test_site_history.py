"""Each page of the site says where it comes from: an SOP page its last change (the day
and the staff ID of the commit that last changed its file under site/), a preview the
pages not committed yet, a generated reference page the commit whose workflow and
schemas it follows, and nothing else. Real repositories, real keys, the real build."""

from __future__ import annotations

from pathlib import Path

from .conftest import CANARY, Programme
from .test_config_commit import edit

PAGE = "site/sop/step-2-assessment.md"
UNTOUCHED = "site/sop/glossary.md"
TYPO = "The assesment starts"
FIXED = "The assessment starts"


def html(out: Path, page: str) -> str:
    name = page.removeprefix("site/").removesuffix(".md") + ".html"
    return (out / name).read_text(encoding="utf-8")


def last_commit(programme: Programme, *args: str) -> tuple[str, str]:
    """The id and the author's day of a commit, as git reads them."""
    oid, day = programme.git("log", "-1", "--format=%H %ad", "--date=short", *args).split()
    return oid, day


def test_an_sop_page_shows_the_day_and_staff_id_of_its_last_change(
    programme: Programme, tmp_path: Path
) -> None:
    edit(programme, PAGE, "\n", f"\n\n{TYPO} with a first visit.\n")
    added = programme.cli("config", "commit", "-m", "sop_visit_note", as_="pm-001")
    assert added.exit_code == 0, added.output
    edit(programme, PAGE, TYPO, FIXED)
    fixed = programme.cli("config", "commit", "-m", "sop_typo_fix", as_="co-north")
    assert fixed.exit_code == 0, fixed.output
    fix, fix_day = last_commit(programme)
    assert programme.new_case()  # a later commit that does not touch the page
    init, init_day = last_commit(programme, "--max-parents=0", "HEAD")

    out = tmp_path / "built"
    built = programme.cli("site", "build", "--out", str(out), as_=None)
    assert built.exit_code == 0, built.output
    page = html(out, PAGE)
    assert FIXED in page
    assert f"Last changed on {fix_day} by co-north (commit {fix[:12]})." in page
    assert f"Last changed on {init_day} by pm-001 (commit {init[:12]})." in html(out, UNTOUCHED)
    assert "not committed yet" not in page


def test_a_page_committed_without_cmgit_shows_no_name(programme: Programme, tmp_path: Path) -> None:
    """A plain git commit carries its author's name, perhaps a person's, and any trailer
    it likes: the page shows the day and the commit, never the name."""
    edit(programme, UNTOUCHED, "\n", "\n\nA note.\n")
    programme.git("add", UNTOUCHED)
    programme.git(
        "-c",
        f"user.name={CANARY} Person",
        "-c",
        "user.email=person@example.org",
        "commit",
        "-qm",
        f"glossary\n\nCmgit-Actor: {CANARY} Person",
    )
    oid, day = last_commit(programme)
    out = tmp_path / "built"
    assert programme.cli("site", "build", "--out", str(out), as_=None).exit_code == 0
    page = html(out, UNTOUCHED)
    assert (
        f"Last changed on {day} in commit {oid[:12]}, not made by cmgit: no staff ID recorded."
        in page
    )
    assert CANARY not in page and "person@" not in page


def test_a_preview_marks_the_pages_changed_in_the_work_tree(
    programme: Programme, tmp_path: Path
) -> None:
    edit(programme, PAGE, "\n", "\n\nA draft paragraph.\n")
    (programme.root / "site" / "sop" / "new-page.md").write_text("# A new page\n\nDraft.\n")
    head = programme.git("rev-parse", "HEAD").strip()
    init, init_day = last_commit(programme, "--max-parents=0", "HEAD")
    out = tmp_path / "preview"
    built = programme.cli("site", "build", "--preview", "--out", str(out), as_=None)
    assert built.exit_code == 0, built.output
    draft = f"Last change: not committed yet (this page differs from commit {head[:12]})."
    assert draft in html(out, PAGE)
    assert draft in html(out, "site/sop/new-page.md")
    assert f"Last changed on {init_day} by pm-001 (commit {init[:12]})." in html(out, UNTOUCHED)


def test_generated_reference_pages_say_they_follow_the_built_commit(
    programme: Programme, tmp_path: Path
) -> None:
    head = programme.git("rev-parse", "HEAD").strip()
    out = tmp_path / "built"
    assert programme.cli("site", "build", "--out", str(out), as_=None).exit_code == 0
    for name in ("states", "transitions", "guards", "forms"):
        page = (out / "reference" / f"{name}.html").read_text(encoding="utf-8")
        assert (
            f"Generated from the workflow and schema files of commit <code>{head}</code>" in page
        ), name
        assert "Last changed on" not in page and "not committed yet" not in page, name
