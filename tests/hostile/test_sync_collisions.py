"""Sync never gets stuck (issue #14): items two offices add to one case both survive,
old sequential ids that collide are renumbered while unpushed, a true conflict names the
case and the command that resolves it, and a sync can always be re-run or aborted.

End to end: a real bare central repository with the server hook, two office clones, real
age keys, real `cmgit` processes where a sync is killed half-way."""

from __future__ import annotations

import json
import re
import shutil
import signal
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cmgit import ids
from cmgit.merge import MergeConflict, Renumbering, merge_cases
from cmgit.schema import SchemaSet
from cmgit.store import cases
from cmgit.sync import SET_ASIDE

from ..conftest import CANARY, TODAY, Programme, form
from ..test_signing import require_signatures
from ..test_sync import in_office, offices
from .faults_support import assert_consistent, git_ok, run

NEW_ID = re.compile(r"[a-z_]+-[0-9A-HJKMNP-TV-Z]{8}")

# A sealed text field of each list form, to tell the two offices' items apart.
TEXT_FIELD = {
    "note": "text",
    "follow_up": "issues_identified",
    "referral": "reason",
    "review": "gaps",
    "consent": "limitations",
}


def item(programme: Programme, office: Path, case_id: str, name: str, text: str) -> dict[str, Any]:
    """The fixture form ``name`` dated today, its text saying which office wrote it."""
    doc = form(name)
    body = doc[name]
    body[TEXT_FIELD[name]] = f"{text} {CANARY}"
    for key in ("date", "written_on", "referred_on", "decision_on"):
        if key in body:
            body[key] = TODAY
    if name == "referral":
        shown = in_office(programme, office, "show", case_id, "--json")
        body["consent_ref"] = json.loads(shown.stdout)["consent"][0]["consent_id"]
        body["status_updated_on"] = body["feedback_received_on"] = TODAY
    if name == "review":
        body["next_review_on"] = "2026-07-01"
    return doc


def record(programme: Programme, office: Path, case_id: str, name: str, text: str) -> str:
    path = programme.form_file(name, item(programme, office, case_id, name, text))
    done = in_office(programme, office, "record", case_id, name, "--from", path)
    assert done.exit_code == 0, done.output
    return done.stdout.split()[-1]


def items(programme: Programme, office: Path, case_id: str, name: str) -> list[dict[str, Any]]:
    shown = in_office(programme, office, "show", case_id, "--json")
    assert shown.exit_code == 0, shown.output
    return list(json.loads(shown.stdout).get(name) or [])


def texts(programme: Programme, office: Path, case_id: str, name: str) -> list[str]:
    field = TEXT_FIELD[name]
    return sorted(i[field] for i in items(programme, office, case_id, name) if field in i)


def sync(programme: Programme, office: Path, *args: str) -> str:
    done = in_office(programme, office, "sync", *args)
    assert done.exit_code == 0, done.output
    return done.stdout


def head(office: Path) -> str:
    return git_ok(office, "rev-parse", "HEAD").stdout.strip()


def legacy_editor(tmp_path: Path, item_id: str, text: str) -> dict[str, str]:
    """An $EDITOR that adds a note with ``item_id``, as a cmgit before collision-free
    ids would have numbered it."""
    script = tmp_path / f"add-{item_id}-{len(text)}.py"
    note = {"note_id": item_id, "written_on": TODAY, "written_by": "cw-north-1", "text": text}
    script.write_text(
        "import sys, yaml\n"
        "p = sys.argv[1]\n"
        "doc = yaml.safe_load(open(p)) or {}\n"
        f"doc.setdefault('note', []).append({note!r})\n"
        "open(p, 'w').write(yaml.safe_dump(doc, sort_keys=False))\n"
    )
    return {"EDITOR": f"{sys.executable} {script}"}


@pytest.mark.parametrize("name", ["note", "follow_up", "referral", "review", "consent"])
def test_items_both_offices_add_to_one_case_both_survive(
    programme: Programme, tmp_path: Path, name: str
) -> None:
    case_id = programme.walk("implementation")
    central, a, b = offices(programme, tmp_path)
    before = texts(programme, a, case_id, name)
    first = record(programme, a, case_id, name, "from office A")
    second = record(programme, b, case_id, name, "from office B")
    assert NEW_ID.fullmatch(first) and NEW_ID.fullmatch(second) and first != second
    sync(programme, a)
    assert "1 merged" in sync(programme, b)
    sync(programme, a)
    expected = sorted([*before, f"from office A {CANARY}", f"from office B {CANARY}"])
    for office in (a, b):
        assert texts(programme, office, case_id, name) == expected
        assert head(office) == git_ok(central, "rev-parse", "main").stdout.strip()
        assert_consistent(programme, office)
    # ids already pushed never change
    assert {first, second} <= {i[f"{name}_id"] for i in items(programme, a, case_id, name)}
    assert in_office(programme, b, "audit", as_=None).exit_code == 0


def test_colliding_unpushed_sequential_ids_are_renumbered(
    programme: Programme, tmp_path: Path
) -> None:
    """The issue's case: after a pushed `note-1`, two offices each add `note-2` (as an
    older cmgit numbered them). The office that syncs second renumbers its own, unpushed
    one to the new form; its later local change to that note follows; the pushed
    `note-1` and `note-2` keep their ids."""
    case_id = programme.new_case()
    _, a, b = offices(programme, tmp_path)
    editor = legacy_editor(tmp_path, "note-1", f"first note {CANARY}")
    assert programme.cli("-C", str(a), "edit", case_id, env=editor).exit_code == 0
    sync(programme, a)
    sync(programme, b)
    for office, text in ((a, "note of A"), (b, "note of B")):
        editor = legacy_editor(tmp_path, "note-2", f"{text} {CANARY}")
        edited = programme.cli("-C", str(office), "edit", case_id, env=editor)
        assert edited.exit_code == 0, edited.output
    update = item(programme, b, case_id, "note", "note of B, corrected")
    update["note"]["note_id"] = "note-2"
    updated = in_office(
        programme, b, "record", case_id, "note", "--from", programme.form_file("note", update)
    )
    assert updated.exit_code == 0, updated.output
    sync(programme, a)
    out = sync(programme, b)
    assert "2 replayed (2 merged, 1 item id(s) renumbered), pushed" in out, out
    sync(programme, a)
    for office in (a, b):
        notes = {n["note_id"]: n["text"] for n in items(programme, office, case_id, "note")}
        assert notes.pop("note-1") == f"first note {CANARY}"
        assert notes.pop("note-2") == f"note of A {CANARY}"
        ((renumbered, text),) = notes.items()
        assert NEW_ID.fullmatch(renumbered) and text == f"note of B, corrected {CANARY}"
    assert in_office(programme, a, "audit", as_=None).exit_code == 0


def test_both_offices_changing_one_field_is_refused_with_the_way_out(
    programme: Programme, tmp_path: Path
) -> None:
    case_id = programme.new_case()
    _, a, b = offices(programme, tmp_path)
    consent = record(programme, a, case_id, "consent", "one consent")
    sync(programme, a)
    sync(programme, b)
    for office, text in ((a, "changed by A"), (b, "changed by B")):
        update = item(programme, office, case_id, "consent", text)
        update["consent"]["consent_id"] = consent
        path = programme.form_file("consent", update)
        assert (
            in_office(programme, office, "record", case_id, "consent", "--from", path).exit_code
            == 0
        )
    sync(programme, a)
    mine = head(b)
    refused = in_office(programme, b, "sync")
    assert refused.exit_code == 4, refused.output
    assert refused.stderr.startswith(
        f"Error: {case_id}: both offices changed the same fields differently (nothing was "
        f"pushed and nothing lost; to keep the central version of {case_id}, run cmgit sync "
        f"--drop {case_id}: "
    )
    assert f"  /consent/{consent}/limitations\n" in refused.stderr
    assert CANARY not in refused.output and head(b) == mine
    sync(programme, b, "--drop", case_id)
    assert texts(programme, b, case_id, "consent") == [f"changed by A {CANARY}"]


def test_a_true_conflict_names_the_case_and_the_way_out(
    programme: Programme, tmp_path: Path
) -> None:
    """Two different decisions on one case: refused (exit 4) naming the case and
    `cmgit sync --drop ID`, on every re-run, changing nothing; `--drop` sets this clone's
    change aside (kept under a local ref) and syncs the rest; the change can then be
    redone on top."""
    case_id = programme.walk("registered")
    other = programme.new_case()
    central, a, b = offices(programme, tmp_path)
    assert in_office(programme, a, "move", case_id, "assessment").exit_code == 0
    sync(programme, a)
    closed = in_office(programme, b, "move", case_id, "closed", "--reason", "death", as_="sv-north")
    assert closed.exit_code == 0, closed.output
    record(programme, b, other, "note", "unrelated note of B")
    mine = head(b)
    for _ in range(2):  # a re-run meets the same refusal, and changes nothing either
        refused = in_office(programme, b, "sync", as_="sv-north")
        assert refused.exit_code == 4, refused.output
        assert refused.stderr.startswith(
            f"Error: {case_id}: both offices made a different workflow decision on this case"
        )
        assert f"run cmgit sync --drop {case_id}:" in refused.stderr
        assert "/state" in refused.stderr and CANARY not in refused.output
        assert head(b) == mine
        assert_consistent(programme, b)
    nothing = in_office(programme, b, "sync", "--abort")
    assert (nothing.exit_code, nothing.stdout) == (0, "sync: no unfinished sync to abort\n")

    dropped = in_office(programme, b, "sync", "--drop", case_id, as_="sv-north")
    assert dropped.exit_code == 0, dropped.output
    assert f"set aside: {case_id}: registered -> closed\n" in dropped.stdout
    kept_as = f"refs/cmgit/set-aside/{mine[:12]}"
    assert f"sync: the changes set aside are kept as {kept_as}, not pushed;" in dropped.stdout
    assert head(b) == git_ok(central, "rev-parse", "main").stdout.strip()
    assert git_ok(b, "rev-parse", kept_as).stdout.strip() == mine  # nothing lost
    assert git_ok(central, "for-each-ref", SET_ASIDE).stdout == ""  # never pushed
    rows = {r["case_id"]: r for r in json.loads(in_office(programme, b, "list", "--json").stdout)}
    assert rows[case_id]["state"] == "assessment"
    assert texts(programme, b, other, "note") == [f"unrelated note of B {CANARY}"]
    # the decision redone on top of the central one
    redone = in_office(programme, b, "move", case_id, "closed", "--reason", "death", as_="sv-north")
    assert redone.exit_code == 0, redone.output
    sync(programme, b)
    assert in_office(programme, b, "audit", as_=None).exit_code == 0

    lost = in_office(programme, b, "sync", "--drop", case_id)
    assert lost.exit_code == 6 and f"this clone has no unpushed change to {case_id}" in lost.stderr


def test_two_offices_adding_a_plan_is_a_true_conflict(programme: Programme, tmp_path: Path) -> None:
    """A new case plan supersedes the last: two offices each adding one are two decisions,
    refused rather than leaving two plans in force."""
    case_id = programme.walk("implementation")
    _, a, b = offices(programme, tmp_path)
    for office in (a, b):
        plan = in_office(
            programme,
            office,
            "record",
            case_id,
            "case_plan",
            "--from",
            programme.form_file("case_plan"),
        )
        assert plan.exit_code == 0, plan.output
    sync(programme, a)
    mine = head(b)
    refused = in_office(programme, b, "sync")
    assert refused.exit_code == 4 and "/case_plan" in refused.stderr, refused.output
    assert f"cmgit sync --drop {case_id}" in refused.stderr
    assert head(b) == mine


def test_sync_is_idempotent(programme: Programme, tmp_path: Path) -> None:
    case_id = programme.new_case()
    central, a, _ = offices(programme, tmp_path)
    record(programme, a, case_id, "note", "once")
    assert "pushed" in sync(programme, a)
    tip = git_ok(central, "rev-parse", "main").stdout.strip()
    for _ in range(2):
        again = sync(programme, a)
        assert again == "sync: 0 fetched, 0 replayed (0 merged), nothing to push\n"
        assert head(a) == tip == git_ok(central, "rev-parse", "main").stdout.strip()
        assert_consistent(programme, a)
    assert not (a / ".git" / "cmgit" / "sync-start").exists()


def test_abort_goes_back_to_before_a_sync_that_did_not_finish(
    programme: Programme, tmp_path: Path
) -> None:
    """A sync killed after its replay moved the branch: `--abort` restores the branch,
    index and work tree; a sync killed after its push cannot be aborted (its commits are
    central), and the next sync brings the clone up to date."""
    case_id = programme.new_case()
    central, a, b = offices(programme, tmp_path)
    record(programme, a, case_id, "note", "note of A")
    sync(programme, a)
    record(programme, b, case_id, "note", "note of B")
    mine = head(b)
    path = b / ids.record_path(case_id)
    file_before = path.read_bytes()
    index_before = git_ok(b, "ls-files", "-s").stdout

    killed = run(programme, "sync", cwd=b, env={"CMGIT_CRASH_AT": "sync-before-push"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert head(b) != mine  # the replay had moved the branch
    aborted = in_office(programme, b, "sync", "--abort")
    assert aborted.exit_code == 0, aborted.output
    assert aborted.stdout == f"sync: aborted; this clone is back at {mine[:12]}\n"
    assert head(b) == mine and path.read_bytes() == file_before
    assert git_ok(b, "ls-files", "-s").stdout == index_before
    assert_consistent(programme, b)
    assert texts(programme, b, case_id, "note") == [f"note of B {CANARY}"]

    killed = run(programme, "sync", cwd=b, env={"CMGIT_CRASH_AT": "sync-pushed"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    refused = in_office(programme, b, "sync", "--abort")
    assert refused.exit_code == 6
    assert "the sync had already pushed this clone's work" in refused.stderr
    assert "run cmgit sync to bring this clone up to date" in refused.stderr
    sync(programme, b)
    assert head(b) == git_ok(central, "rev-parse", "main").stdout.strip()
    assert texts(programme, b, case_id, "note") == sorted(
        [f"note of A {CANARY}", f"note of B {CANARY}"]
    )
    assert_consistent(programme, b)


# -- the merge itself, pure ---------------------------------------------------------------


def numbered(form_name: str, taken: object) -> str:
    return ids.new_item_id(form_name, b"\x00\x00\x00\x00\x07")


def test_renumbering_leaves_pushed_and_identical_items_alone() -> None:
    base = {"case_id": "CP-00000000", "note": [{"note_id": "note-1", "text": "pushed"}]}
    ours = {**base, "note": [*base["note"], {"note_id": "note-2", "text": "ours"}]}
    theirs = {**base, "note": [*base["note"], {"note_id": "note-2", "text": "theirs"}]}
    with pytest.raises(MergeConflict, match="changed the same fields"):
        merge_cases(base, ours, theirs, case_id="CP-00000000")
    renumbering = Renumbering(numbered)
    merged = merge_cases(base, ours, theirs, case_id="CP-00000000", renumbering=renumbering)
    assert merged["note"] == [
        {"note_id": "note-1", "text": "pushed"},
        {"note_id": "note-2", "text": "theirs"},
        {"note_id": "note-00000007", "text": "ours"},
    ]
    assert renumbering.renamed == {"note-2": "note-00000007"}
    same = merge_cases(
        base, theirs, theirs, case_id="CP-00000000", renumbering=Renumbering(numbered)
    )
    assert same["note"] == theirs["note"]


def test_item_ids_are_the_form_and_8_crockford_characters() -> None:
    assert ids.new_item_id("follow_up", bytes(5)) == "follow_up-00000000"
    assert ids.new_item_id("note", b"\xff" * 5) == "note-ZZZZZZZZ"
    assert ids.next_item_id("note", ["note-1", "note-7K2M9QX4", "note-3"]) == "note-4"
    with pytest.raises(ValueError, match="5 bytes"):
        ids.new_item_id("note", bytes(4))


def test_abort_never_drops_commits_made_after_the_sync_stopped(
    programme: Programme, tmp_path: Path
) -> None:
    case_id = programme.new_case()
    _, a, b = offices(programme, tmp_path)
    record(programme, a, case_id, "note", "note of A")
    sync(programme, a)
    record(programme, b, case_id, "note", "note of B")
    killed = run(programme, "sync", cwd=b, env={"CMGIT_CRASH_AT": "sync-before-push"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    record(programme, b, case_id, "note", "later note of B")
    later = head(b)
    refused = in_office(programme, b, "sync", "--abort")
    assert refused.exit_code == 6 and head(b) == later
    assert "this clone has commits made after the sync stopped" in refused.stderr
    assert "run cmgit sync to finish the sync instead" in refused.stderr
    sync(programme, b)
    assert texts(programme, b, case_id, "note") == sorted(
        f"{text} {CANARY}" for text in ("note of A", "note of B", "later note of B")
    )


def test_a_central_repository_that_refuses_the_push(programme: Programme, tmp_path: Path) -> None:
    """The central hook refuses: exit 6 saying so, not "kept moving"; the replay that
    moved the branch can be aborted."""
    case_id = programme.new_case()
    central, a, b = offices(programme, tmp_path)
    record(programme, a, case_id, "note", "note of A")
    sync(programme, a)
    hook = central / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    record(programme, b, case_id, "note", "note of B")
    mine = head(b)
    refused = in_office(programme, b, "sync")
    assert refused.exit_code == 6, refused.output
    assert refused.stderr.startswith(
        "Error: the central repository refused this clone's commits (nothing there changed; "
        "run cmgit audit to see which commit breaks which rule; or cmgit sync --abort "
        "returns this clone to where it was before the sync)"
    )
    assert head(b) != mine
    assert in_office(programme, b, "sync", "--abort").exit_code == 0
    assert head(b) == mine
    assert_consistent(programme, b)


def test_a_repository_with_older_schemas_keeps_sequential_ids(programme: Programme) -> None:
    """Where a repository's schemas admit only sequential item ids (made before SPEC
    section 9), cmgit goes on numbering rather than write ids its schemas refuse."""
    folder = programme.work / "schemas"
    shutil.copytree(programme.root / "schemas", folder)
    common = folder / "common.schema.json"
    doc = json.loads(common.read_text())
    doc["$defs"]["item_id"]["pattern"] = "^[a-z][a-z0-9_]*-[0-9]{1,6}$"
    common.write_text(json.dumps(doc))
    older = cases.item_ids(SimpleNamespace(schemas=SchemaSet.load(folder)))
    assert older("note", ["note-1", "note-2"]) == "note-3"
    current = cases.item_ids(SimpleNamespace(schemas=SchemaSet.load(programme.root / "schemas")))
    assert NEW_ID.fullmatch(current("note", ["note-1"]))


def test_signed_offices_renumber_and_re_sign(programme: Programme, tmp_path: Path) -> None:
    """With signed commits required, the replayed commits, renumbered ids and all, are
    re-signed with the actor's registered SSH key, and the central hook and audit accept
    them."""
    _, cw_key = require_signatures(programme, tmp_path)
    signed = {"CMGIT_SIGNING_KEY": str(cw_key)}
    # made signed: the central hook takes the case's keyring shard signed only
    created = programme.cli("new", "--from", programme.form_file("identification"), env=signed)
    assert created.exit_code == 0, created.output
    case_id = created.stdout.strip()
    central, a, b = offices(programme, tmp_path)
    for office, text in ((a, "signed note of A"), (b, "signed note of B")):
        editor = legacy_editor(tmp_path, "note-1", f"{text} {CANARY}")
        edited = programme.cli("-C", str(office), "edit", case_id, env={**editor, **signed})
        assert edited.exit_code == 0, edited.output
    for office in (a, b):
        done = programme.cli("-C", str(office), "sync", env=signed)
        assert done.exit_code == 0, done.output
    assert "1 item id(s) renumbered" in done.stdout
    assert texts(programme, b, case_id, "note") == sorted(
        f"{text} {CANARY}" for text in ("signed note of A", "signed note of B")
    )
    log = json.loads(in_office(programme, b, "log", case_id, "--json", as_=None).stdout)
    assert {r["signature"] for r in log[-2:]} == {"good"}
    assert head(b) == git_ok(central, "rev-parse", "main").stdout.strip()
    assert in_office(programme, b, "audit", as_=None).exit_code == 0


def test_conflicts_on_two_cases_are_resolved_in_one_run(
    programme: Programme, tmp_path: Path
) -> None:
    """Each refusal names the cases dropped so far and the next one, so following the
    hint always gets out."""
    first, second = programme.walk("registered"), programme.walk("registered", seed=2)
    _, a, b = offices(programme, tmp_path)
    for case_id in (first, second):
        assert in_office(programme, a, "move", case_id, "assessment").exit_code == 0
        moved = in_office(
            programme, b, "move", case_id, "closed", "--reason", "death", as_="sv-north"
        )
        assert moved.exit_code == 0, moved.output
    sync(programme, a)
    keyring = git_ok(b, "for-each-ref", "refs/cmgit").stdout
    refused = in_office(programme, b, "sync")
    assert refused.exit_code == 4 and f"run cmgit sync --drop {first}:" in refused.stderr
    refused = in_office(programme, b, "sync", "--drop", first)
    assert refused.exit_code == 4, refused.output
    assert f"run cmgit sync --drop {first} --drop {second}:" in refused.stderr
    assert git_ok(b, "for-each-ref", "refs/cmgit").stdout == keyring  # a refusal leaves nothing
    done = sync(programme, b, "--drop", first, "--drop", second)
    assert done.count("set aside: ") == 2
    assert in_office(programme, b, "audit", as_=None).exit_code == 0
