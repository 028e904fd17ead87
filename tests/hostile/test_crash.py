"""Crash safety (hostile G4, L2): a real cmgit process killed with SIGKILL at each stage
of a change leaves the repository in the old state or the new one, never between; git
finds no damage; no plaintext stays on disk; `cmgit recover` cleans up what is left."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sys
import time
from pathlib import Path
from subprocess import Popen

import pytest

from cmgit import entries, ids
from cmgit.history import PENDING_FILE, git_locks
from cmgit.keyring import ref

from ..conftest import CANARY, Programme
from ..test_sync import offices
from .faults_support import (
    assert_consistent,
    assert_no_plaintext,
    edit_files_of,
    git_ok,
    objects_with_canary,
    run,
    spawn,
)

# Each stage of a change, in order, and whether the change is published once it is passed.
STAGES = {
    "sealed": False,  # record encrypted in memory, nothing written
    "objects-written": False,  # blobs, trees and the commit written; branch not moved
    "ref-updated": True,  # branch moved; index and work tree not yet
    "file-written": True,  # work-tree file replaced; index not yet
    "staged": True,  # index updated; the command has not yet finished
}


def crash(programme: Programme, stage: str, *args: str, as_: str = "cw-north-1") -> None:
    killed = run(programme, *args, as_=as_, env={"CMGIT_CRASH_AT": stage})
    assert killed.returncode == -signal.SIGKILL, (killed.stdout, killed.stderr)


def staff_wrapping(programme: Programme, case_id: str) -> str:
    """The object id of a case's key as wrapped to its staff in the keyring."""
    return programme.git("rev-parse", f"{ref.shard_ref(case_id)}:{case_id}/staff.age").strip()


def notes(programme: Programme, case_id: str) -> list[object]:
    shown = programme.cli("show", case_id, "--json")
    assert shown.exit_code == 0, shown.output
    return json.loads(shown.stdout).get("note") or []


@pytest.mark.parametrize("stage", list(STAGES))
def test_G4_kill_at_each_stage_of_a_change(programme: Programme, stage: str) -> None:
    """G4: SIGKILL after sealing, after the objects, after the ref, after the file, after
    staging: the next command sees exactly the old or the new state; fsck clean; no
    plaintext."""
    case_id = programme.new_case()
    old_head = programme.git("rev-parse", "HEAD").strip()
    crash(programme, stage, "record", case_id, "note", "--from", programme.form_file("note"))
    published = STAGES[stage]
    head = programme.git("rev-parse", "HEAD").strip()
    assert (head != old_head) is published
    if published:
        assert programme.git("rev-parse", "HEAD~1").strip() == old_head
    # the next command, whatever it is, finishes a published change before it reads
    assert len(notes(programme, case_id)) == (1 if published else 0)
    assert_consistent(programme)
    assert programme.cli("validate", as_=None).exit_code == 0
    assert_no_plaintext(programme)
    assert programme.cli("audit", as_=None).exit_code == 0


@pytest.mark.parametrize(
    "stage", ["ref-updated", pytest.param("file-written", marks=pytest.mark.slow)]
)
def test_G4_kill_a_staff_change_that_rewraps_many_case_keys(
    programme: Programme, stage: str
) -> None:
    """G4: a staff change killed after its branch moved, with the registry in one commit
    and the keys of several cases wrapped anew in the keyring: the next command finishes
    every file of it."""
    cases = [programme.new_case() for _ in range(3)]
    wrapped = {case_id: staff_wrapping(programme, case_id) for case_id in cases}
    crash(programme, stage, "staff", "update", "co-north", "--team", "south", as_="pm-001")
    changed = programme.git("show", "--name-only", "--format=", "HEAD").split()
    assert changed == ["staff.yaml"]
    assert all(staff_wrapping(programme, case_id) != wrapped[case_id] for case_id in cases)
    assert programme.cli("validate", as_=None).exit_code == 0
    assert_consistent(programme)
    for case_id in cases:
        assert programme.cli("show", case_id, as_="co-north").exit_code == 5  # not a reader
        assert programme.cli("show", case_id).exit_code == 0
    assert programme.cli("audit", as_=None).exit_code == 0
    assert_no_plaintext(programme)


@pytest.mark.parametrize("stage", ["keyring-moved", "objects-written"])
def test_G4_kill_a_staff_change_after_its_keyring_moved(programme: Programme, stage: str) -> None:
    """G4: a staff change killed after the keyring moved, before its branch did: recover
    puts the keyring back, and every case opens for its readers as before."""
    cases = [programme.new_case() for _ in range(3)]
    keyring_before = programme.git("for-each-ref", "refs/cmgit/keyring/")
    crash(programme, stage, "staff", "update", "co-north", "--team", "south", as_="pm-001")
    assert programme.git("for-each-ref", "refs/cmgit/keyring/") != keyring_before
    done = run(programme, "recover", as_=None)
    assert done.returncode == 0, done.stderr
    assert "put the keyring back" in done.stdout
    assert programme.git("for-each-ref", "refs/cmgit/keyring/") == keyring_before
    assert programme.cli("validate", as_=None).exit_code == 0
    for case_id in cases:
        assert programme.cli("show", case_id).exit_code == 0
    assert_consistent(programme)


@pytest.mark.parametrize(
    "stage", [pytest.param("ref-updated", marks=pytest.mark.slow), "file-written"]
)
def test_G4_recover_finishes_a_killed_new_case_and_says_so(
    programme: Programme, stage: str
) -> None:
    """G4: a `new` killed after its branch moved is finished by `cmgit recover`, which says
    what it did; the state is then exactly the new one."""
    crash(programme, stage, "new", "--from", programme.form_file("identification"))
    assert (programme.root / ".git" / "cmgit" / PENDING_FILE).exists()
    done = run(programme, "recover", as_=None)
    assert done.returncode == 0, done.stderr
    assert "finished the interrupted change of records/" in done.stdout
    assert CANARY not in done.stdout + done.stderr
    assert_consistent(programme)
    record, entry = programme.git("show", "--name-only", "--format=", "HEAD").split()
    case_id = ids.case_id_from_path(record)
    assert case_id is not None and entry == entries.entry_path(case_id, 1)
    assert notes(programme, case_id) == []
    assert_no_plaintext(programme)
    again = run(programme, "recover", as_=None)
    assert again.returncode == 0 and again.stdout == ""


def test_G4_recover_removes_leftover_temporary_files(programme: Programme) -> None:
    """G4: temporary files a killed write left (record, registry, object, journal) are
    removed by `cmgit recover`, which names what it removed."""
    case_id = programme.new_case()
    folder = (programme.root / ids.record_path(case_id)).parent
    strays = [
        folder / ".cmgit-tmp-a1",
        programme.root / ".cmgit-tmp-b2",
        programme.root / ".git" / "cmgit" / ".cmgit-tmp-c3",
        programme.root / ".git" / "objects" / "ab" / "tmp_obj_d4",
    ]
    for path in strays:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"partial")
    shown = programme.git("status", "--porcelain", "--untracked-files=all")
    assert ".cmgit-tmp-a1" in shown and ".cmgit-tmp-b2" in shown
    done = run(programme, "recover", as_=None)
    assert done.returncode == 0
    assert len(done.stdout.strip().splitlines()) == len(strays)
    assert "4 thing(s) put right" in done.stderr
    assert not any(p.exists() for p in strays)
    assert_consistent(programme)


def test_G4_kill_during_sync_push(programme: Programme, tmp_path: Path) -> None:
    """G4: a sync killed just before and just after its push: the central repository has
    the old tip or the new one, the clone stays consistent, the next sync completes."""
    case_id = programme.new_case()
    central, _, _ = offices(programme, tmp_path)
    for stage in ("sync-before-push", "sync-pushed"):
        assert (
            programme.cli(
                "record", case_id, "note", "--from", programme.form_file("note")
            ).exit_code
            == 0
        )
        mine = programme.git("rev-parse", "HEAD").strip()
        crash(programme, stage, "sync")
        central_tip = git_ok(central, "rev-parse", "main").stdout.strip()
        assert (central_tip == mine) is (stage == "sync-pushed")
        assert_consistent(programme)
        synced = run(programme, "sync")
        assert synced.returncode == 0, synced.stderr
        assert git_ok(central, "rev-parse", "main").stdout.strip() == mine
        assert git_ok(central, "fsck", "--strict", "--no-progress").returncode == 0
    assert programme.cli("audit", as_=None).exit_code == 0
    assert_no_plaintext(programme)


@pytest.mark.parametrize(
    "seed", [7, *(pytest.param(seed, marks=pytest.mark.slow) for seed in range(100, 120))]
)
def test_G4_kill_at_a_random_moment(programme: Programme, seed: int) -> None:
    """G4 (non-deterministic): record/move/assign killed with their git children at a
    random moment: old or new state, never between, once recover has run if asked."""
    case_id = programme.walk("registered")
    rng = random.Random(seed)
    commands = [
        ("record", case_id, "note", "--from", programme.form_file("note")),
        ("move", case_id, "assessment"),
        ("record", case_id, "consent", "--from", programme.form_file("consent")),
        ("assign", case_id, "cw-north-2", "--reason", "caseload_balancing"),
    ]
    started = time.monotonic()
    assert run(programme, "show", case_id).returncode == 0
    span = time.monotonic() - started  # about how long a command runs here
    for args in commands:
        as_ = "sv-north" if args[0] == "assign" else "cw-north-1"
        before = programme.git("rev-parse", "HEAD").strip()
        proc = spawn(programme, *args, as_=as_)
        time.sleep(rng.uniform(0.2, 1.6) * span)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the command and its git children
        proc.communicate()
        shown = programme.cli("show", case_id, "--json", as_=as_)
        if shown.exit_code == 6:  # a killed git left index.lock: the message says recover
            assert "cmgit recover" in shown.stderr, shown.stderr
            assert programme.cli("recover", as_=None).exit_code == 0
            shown = programme.cli("show", case_id, "--json", as_=as_)
        assert shown.exit_code == 0, shown.output
        head = programme.git("rev-parse", "HEAD").strip()
        assert head == before or programme.git("rev-parse", "HEAD~1").strip() == before
        # A git killed mid-write may leave one of its lock files, which writers report
        # (exit 6, pointing to recover) and recover removes; reads do not look at them.
        if git_locks(programme.root / ".git") or programme.git(
            "status", "--porcelain", "--untracked-files=all"
        ):
            assert programme.cli("recover", as_=None).exit_code == 0
        assert_consistent(programme)
        if head == before:  # not published: do it again so the walk goes on
            again = programme.cli(*args, as_=as_)
            assert again.exit_code == 0, again.output
    assert programme.cli("audit", as_=None).exit_code == 0
    assert_no_plaintext(programme)


def editor_that_waits(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """An editor that writes the path it was given to a file, then waits to be killed."""
    seen = tmp_path / "seen.txt"
    editor = tmp_path / "editor.py"
    editor.write_text(
        f"import sys, time\nopen({str(seen)!r}, 'w').write(sys.argv[1])\ntime.sleep(60)\n"
    )
    return seen, {"EDITOR": f"{sys.executable} {editor}"}


def editing(programme: Programme, case_id: str, tmp_path: Path) -> tuple[Popen[str], Path]:
    """A `cmgit edit` whose editor has the private file open: the process, the file."""
    seen, env = editor_that_waits(tmp_path)
    seen.unlink(missing_ok=True)
    proc = spawn(programme, "edit", case_id, env=env)
    deadline = time.monotonic() + 60
    while not seen.exists() or not seen.read_text():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    return proc, Path(seen.read_text())


def test_L2_kill_mid_edit_leaves_only_tmpfs_residue_that_recover_removes(
    programme: Programme, tmp_path: Path
) -> None:
    """L2: SIGKILL during an external edit: nothing in the repository changes; the only
    plaintext left is the 0600 edit file on the memory file system, and recover removes it."""
    case_id = programme.new_case()
    before = programme.state()
    killed = []
    for _ in range(3):
        proc, left = editing(programme, case_id, tmp_path)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        killed.append(proc.pid)
        assert edit_files_of(proc.pid) == [left]
        assert CANARY.encode() in left.read_bytes() and left.stat().st_mode & 0o077 == 0
        assert programme.state() == before
        done = run(programme, "recover", as_=None)
        assert done.returncode == 0
        assert not left.exists()
        if "removed an edit file" in done.stdout:
            break
        # Another `cmgit recover` on this machine (the memory file system is shared)
        # removed the leftover first: try again.
    else:
        pytest.fail("recover never reported the edit file it removed")
    assert_no_plaintext(programme, pids=killed)


def test_L2_recover_leaves_a_live_edit_session_alone(programme: Programme, tmp_path: Path) -> None:
    """L2: recover removes only the edit files of processes that are gone, never the file
    of an edit still open in another terminal."""
    case_id = programme.new_case()
    proc, live = editing(programme, case_id, tmp_path)
    try:
        done = run(programme, "recover", as_=None)
        assert done.returncode == 0
        assert live.exists()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate()
    assert not live.exists()  # the session's own cleanup ran


def test_G4_killed_change_with_a_stale_index_lock_is_left_for_recover(programme: Programme) -> None:
    """G4 + G2: a change killed after its branch moved, with git's index.lock left too:
    reading commands say to run recover (exit 6) instead of blaming the record; recover
    removes the lock and finishes the change."""
    case_id = programme.new_case()
    crash(
        programme, "ref-updated", "record", case_id, "note", "--from", programme.form_file("note")
    )
    (programme.root / ".git" / "index.lock").write_bytes(b"")
    shown = run(programme, "show", case_id)
    assert shown.returncode == 6 and "cmgit recover" in shown.stderr
    assert len(shown.stderr.strip().splitlines()) == 1 and CANARY not in shown.stderr
    done = run(programme, "recover", as_=None)
    assert done.returncode == 0, done.stderr
    assert "index.lock" in done.stdout and "finished the interrupted change" in done.stdout
    assert_consistent(programme)
    assert len(notes(programme, case_id)) == 1


def test_L2_recover_never_stores_a_hand_changed_file_as_an_object(programme: Programme) -> None:
    """L2: a record file changed by hand after a killed change (here: plaintext typed into
    it) is left alone by recover, and its content never becomes a git object."""
    case_id = programme.new_case()
    crash(
        programme, "ref-updated", "record", case_id, "note", "--from", programme.form_file("note")
    )
    record = programme.root / ids.record_path(case_id)
    record.write_bytes(b"name: CANARY-NAME-typed-by-hand\n")
    for _ in range(2):
        done = run(programme, "recover", as_=None)
        assert done.returncode == 0 and CANARY not in done.stdout + done.stderr
    assert record.read_bytes() == b"name: CANARY-NAME-typed-by-hand\n"
    assert objects_with_canary(programme.root) == []


@pytest.mark.parametrize("stage", ["objects-written", "ref-updated"])
def test_G4_kill_an_import(programme: Programme, stage: str) -> None:
    """An import killed before its branch moves leaves no case; after, all of them, and
    the next command finishes the work tree."""
    from ..test_exchange import PRIMERO, write_sample

    source = programme.work / "rows.csv"
    write_sample(source, 30, 10)
    old_head = programme.git("rev-parse", "HEAD").strip()
    crash(programme, stage, "import", str(source), "--map", str(PRIMERO), as_="pm-001")
    published = STAGES[stage]
    assert (programme.git("rev-parse", "HEAD").strip() != old_head) is published
    assert programme.cli("validate", as_=None).exit_code == 0
    assert len(programme.repo().case_ids()) == (27 if published else 0)
    assert_consistent(programme)
    assert programme.cli("audit", as_=None).exit_code == 0
