"""Names stay out of commits, locally too (guard GC): the client's hooks refuse a commit
message, or a new path, that holds a name, place or contact of a case the committer can
open, and a path outside the case repository's layout; `cmgit config commit` refuses SOP
pages that hold one. Real repositories, real keys, real `git commit` with the hooks."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cmgit import demo, personal_text

from .conftest import CANARY, Programme

GUARD_LINE = "  GC: "


def registered(
    programme: Programme, name: str, seed: int, worker: str = "cw-north-1", team: str = "north"
) -> str:
    """A case walked to `registered` by ``worker``, its child called ``name``; its ID."""
    journey = programme.journey(
        worker, f"sv-{team}", days_before=demo.DURATION["registered"] + 10, seed=seed
    )
    journey.forms.name = name
    demo.walk(journey, "registered")
    return journey.case_id


def commit(
    programme: Programme, message: str, *, as_: str | None = "cw-north-1"
) -> subprocess.CompletedProcess[str]:
    """`git commit` of what is staged, as git runs it for a person at the keyboard."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "CMGIT_"))}
    if as_ is not None:
        env["CMGIT_IDENTITY"] = str(programme.key(as_))
    return subprocess.run(
        ["git", "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-q", "-m", message],
        cwd=programme.root,
        capture_output=True,
        text=True,
        env=env,
    )


def add(programme: Programme, path: str, text: str = "Notes on the procedure.\n") -> None:
    full = programme.root / path
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_text(text)
    programme.git("add", path)


@pytest.fixture
def hooked(programme: Programme) -> Programme:
    installed = programme.cli("hooks", "install", as_=None)
    assert installed.exit_code == 0, installed.output
    assert "commit-msg" in installed.stdout
    return programme


def refused_with_gc(done: subprocess.CompletedProcess[str], where: str, case_id: str) -> None:
    assert done.returncode == 1, done.stderr  # git's code for a hook's refusal
    assert f"{GUARD_LINE}{where} holds a personal detail of case {case_id}" in done.stderr
    assert CANARY not in done.stderr + done.stdout


def test_a_commit_message_with_a_childs_name_is_refused(hooked: Programme) -> None:
    case_id = registered(hooked, "Selam CANARY-NAME-0101 Bekele", seed=101)
    add(hooked, "site/sop/visit-notes.md")
    before = hooked.state()
    done = commit(hooked, "Visit notes after seeing selam at the centre")
    refused_with_gc(done, "the commit message", case_id)
    assert "Selam" not in done.stderr and "selam" not in done.stderr
    assert hooked.state() == before
    # The hook's own exit code, as `cmgit hooks commit-msg FILE` (what git runs) gives it.
    message = hooked.work / "message.txt"
    message.write_text("Visit notes after seeing SELAM at the centre\n")
    direct = hooked.cli("hooks", "commit-msg", str(message))
    assert direct.exit_code == 4, direct.output
    assert f"GC: the commit message holds a personal detail of case {case_id}" in direct.stderr
    assert "SELAM" not in direct.output
    # The canary word of the name, hyphens and all, is a word of the name too.
    done = commit(hooked, "notes: canary_name_0101")
    refused_with_gc(done, "the commit message", case_id)


def test_a_new_path_holding_a_place_name_is_refused(hooked: Programme) -> None:
    case_id = registered(hooked, "Amina CANARY-NAME-0102 Hassan", seed=102)
    # The demo gives the child the address "CANARY-ADDRESS-0102": a place, written here
    # as a file name would have it.
    add(hooked, "site/sop/canary_address_0102.md")
    before = hooked.state()
    done = commit(hooked, "Add a page")
    refused_with_gc(done, "the path of new file 1 of 1", case_id)
    assert hooked.state() == before


def test_a_file_outside_the_layout_is_refused(hooked: Programme) -> None:
    hooked.new_case()
    add(hooked, "notes/todo.txt")
    before = hooked.state()
    done = commit(hooked, "Add my notes")
    assert done.returncode == 1, done.stderr
    assert "1 new path(s) outside the case repository's layout" in done.stderr
    assert "records/, schemas/, site/, mkdocs.yml, settings.yaml, staff.yaml" in done.stderr
    assert "notes/todo.txt" not in done.stderr
    assert hooked.state() == before


def test_a_clean_commit_passes(hooked: Programme) -> None:
    registered(hooked, "Yonas CANARY-NAME-0103 Tesfay", seed=103)
    add(hooked, "site/sop/visit-checklist.md", "Bring the consent form.\n")
    done = commit(hooked, "Add a visit checklist")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert hooked.git("status", "--porcelain") == ""


def test_without_an_identity_the_check_is_skipped_and_says_so(hooked: Programme) -> None:
    registered(hooked, "Selam CANARY-NAME-0104 Bekele", seed=104)
    add(hooked, "site/sop/visit-notes.md")
    done = commit(hooked, "Add a page", as_=None)
    assert done.returncode == 0, done.stderr
    assert "(guard GC) was skipped: no identity (set CMGIT_IDENTITY" in done.stderr
    # The layout needs no key: it is kept without an identity too.
    add(hooked, "notes.txt")
    assert commit(hooked, "Add notes", as_=None).returncode == 1


def test_an_identity_of_no_one_here_skips_the_check_and_says_so(hooked: Programme) -> None:
    registered(hooked, "Selam CANARY-NAME-0108 Bekele", seed=108)
    stranger = hooked.keys / "stranger.txt"
    assert hooked.cli("keygen", "-o", str(stranger), as_=None).exit_code == 0
    message = hooked.work / "message.txt"
    message.write_text("Selam\n")
    done = hooked.cli(
        "hooks", "commit-msg", str(message), as_=None, env={"CMGIT_IDENTITY": str(stranger)}
    )
    assert done.exit_code == 0, done.output
    assert "(guard GC) was skipped: " in done.stderr
    assert "the commit goes ahead without it" in done.stderr


def test_names_shorter_than_four_characters_are_not_matched(hooked: Programme) -> None:
    case_id = registered(hooked, "Abe CANARY-NAME-0105 Kidane", seed=105)
    add(hooked, "site/sop/abe.md")
    done = commit(hooked, "Abe: fix the ABE table")
    assert done.returncode == 0, done.stderr
    add(hooked, "site/sop/more.md")
    refused_with_gc(commit(hooked, "More on kidane"), "the commit message", case_id)


def test_a_case_the_committer_cannot_open_is_not_used(hooked: Programme) -> None:
    south = registered(
        hooked, "Hanna CANARY-NAME-0106 Gebre", seed=106, worker="cw-south-1", team="south"
    )
    add(hooked, "site/sop/hanna.md")
    # Named by its ID too, so it is among the cases screened: cw-north-1 cannot open it.
    done = commit(hooked, f"Hanna asked about {south}", as_="cw-north-1")
    assert done.returncode == 0, done.stderr
    add(hooked, "site/sop/more.md")
    refused_with_gc(commit(hooked, "Hanna", as_="cw-south-1"), "the commit message", south)


def test_a_config_commit_of_an_sop_page_holding_a_name_is_refused(programme: Programme) -> None:
    case_id = registered(programme, "Selam CANARY-NAME-0107 Bekele", seed=107)
    allowed = programme.cli(
        "settings", "set", "sop_editors", "[programme_manager, caseworker]", as_="pm-001"
    )
    assert allowed.exit_code == 0, allowed.output
    page = programme.root / "site" / "sop" / "principles.md"
    page.write_text(page.read_text() + "\nAs we saw with Bekele last month.\n")
    before = programme.state()
    for extra in ((), ("--dry-run",)):
        done = programme.cli("config", "commit", "-m", "sop_example", *extra)
        assert done.exit_code == 4, done.output
        assert f"GC: site/sop/principles.md holds a personal detail of case {case_id}" in (
            done.stderr
        )
        assert CANARY not in done.output and "Bekele" not in done.output
        assert programme.state() == before
    # A programme manager has no caseload, and the page names no case: nothing to screen.
    assert programme.cli("config", "commit", "-m", "sop_example", as_="pm-001").exit_code == 0


# -- the pure matching ---------------------------------------------------------------


def test_needles_are_words_of_names_and_parts_of_places() -> None:
    found = personal_text.needles(
        [
            ("name", "Abe Jean-Pierre"),
            ("place", "Camp A, block 4, Hillside"),
            ("contact", "Ali, 12 b"),
        ]
    )
    assert found == {" jean pierre ", " camp a ", " block 4 ", " hillside "}


def test_matching_is_by_whole_words_and_case_insensitive() -> None:
    by_case = {"CP-00000000": {" selam "}, "CP-11111111": {" jean pierre "}}
    texts = {"a": "SELAM's file", "b": "Selamawit", "c": "jean_pierre.md", "d": "jean"}
    assert personal_text.find(texts, by_case) == [
        personal_text.Hit("a", "CP-00000000"),
        personal_text.Hit("c", "CP-11111111"),
    ]


def test_the_refusal_never_holds_the_string() -> None:
    error = personal_text.refusal([personal_text.Hit("the commit message", "CP-7K2M9QX4")])
    assert error.exit_code == 4
    assert str(error).splitlines()[1] == (
        "  GC: the commit message holds a personal detail of case CP-7K2M9QX4"
    )


def test_marked_fields_are_read_from_the_schema(programme: Programme) -> None:
    schemas = programme.repo().schemas
    forms = {
        "registration": {
            "registration_location": "Market Road",
            "child": {"full_name": "Selam", "other_names": ["Selamawit"], "sex": "female"},
            "caregivers": [{"name": "Tesfay", "contact": "0700", "relationship": "uncle"}],
        },
        "identification": {"initial_concern_summary": "Seen at Market Road"},
    }
    assert sorted(personal_text.marked_values(forms, personal_text.plan(schemas))) == [
        ("contact", "0700"),
        ("name", "Selam"),
        ("name", "Selamawit"),
        ("name", "Tesfay"),
        ("place", "Market Road"),
    ]


def test_hooks_written_once_each(hooked: Programme) -> None:
    hooks = Path(hooked.git("rev-parse", "--git-path", "hooks").strip())
    hooks = hooks if hooks.is_absolute() else hooked.root / hooks
    assert 'hooks commit-msg "$1"' in (hooks / "commit-msg").read_text()
    again = hooked.cli("hooks", "install", as_=None)
    assert again.exit_code == 0, again.output
