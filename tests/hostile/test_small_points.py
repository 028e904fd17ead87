"""The smaller points of the central-repository review, each as the attack or accident
that found it: a concurrent write that exits as a held lock does, a lost laptop's key and
the history it still opens, plaintext left by a killed `cmgit edit`, and a record sealed
to an outsider in place of the programme manager."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cmgit import crypto, editing, ids, store
from cmgit.errors import INVALID_RECORD, REPOSITORY, RepositoryBusy
from cmgit.history import Author
from cmgit.keyring import ref, wrap
from cmgit.store import casekeys, unit

from ..conftest import CANARY, Programme
from .faults_support import assert_consistent, assert_refused, spawn
from .sealed_files import STAFF_FILE, keyring_files, migrated, plant_keyring

# -- a held lock exits 6 on every path ---------------------------------------------------


@contextlib.contextmanager
def holding_the_lock(programme: Programme) -> Iterator[None]:
    """Hold cmgit's repository lock as another cmgit command would."""
    fd = os.open(programme.root / ".git" / "cmgit" / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def wait_for_lock_open(proc: subprocess.Popen[str], programme: Programme) -> None:
    """Wait until ``proc`` has opened the repository lock: it has read what it will
    change and now waits for the lock."""
    lock = os.path.realpath(programme.root / ".git" / "cmgit" / "lock")
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.communicate()
        with contextlib.suppress(OSError):
            fds = os.listdir(f"/proc/{proc.pid}/fd")
            if any(_link(f"/proc/{proc.pid}/fd/{fd}") == lock for fd in fds):
                return
        assert time.monotonic() < deadline, "the command never reached the lock"
        time.sleep(0.02)


def _link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def another_commit_of(programme: Programme, case_id: str) -> str:
    """A note committed on the case by another command, then taken off the branch again,
    so that a test can put it back at the moment it chooses: the commit id."""
    done = programme.cli("record", case_id, "note", "--from", programme.form_file("note"))
    assert done.exit_code == 0, done.output
    other = programme.git("rev-parse", "HEAD").strip()
    programme.git("reset", "-q", "--hard", "HEAD~1")
    return other


def run_while_another_writes(
    programme: Programme, case_id: str, *args: str, as_: str = "cw-north-1"
) -> tuple[subprocess.CompletedProcess[str], tuple[str, str, str]]:
    """Run a cmgit command that reads the case, then waits for the lock while another
    command commits a change of that case: its result, and the repository's state after
    the other command."""
    other = another_commit_of(programme, case_id)
    with holding_the_lock(programme):
        proc = spawn(programme, *args, as_=as_, env={"CMGIT_LOCK_TIMEOUT": "120"})
        wait_for_lock_open(proc, programme)
        programme.git("reset", "-q", "--hard", other)
        after = programme.state()
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), after


@pytest.mark.parametrize("command", ["record", "move"])
def test_a_concurrent_write_to_the_same_case_exits_6(programme: Programme, command: str) -> None:
    """Two commands on one case: the one that read the case before the other committed
    exits 6, as a held lock does, says another command was writing and to run it again,
    and changes nothing."""
    case_id = programme.new_case()
    if command == "record":
        args = ("record", case_id, "note", "--from", programme.form_file("note"))
    else:
        args = ("move", case_id, "closed", "--reason", "duplicate")
    result, after = run_while_another_writes(
        programme, case_id, *args, as_="cw-north-1" if command == "record" else "sv-north"
    )
    line = assert_refused(
        result, REPOSITORY, programme, after, "another command was writing this case"
    )
    assert case_id in line and "run this command again" in line
    assert_consistent(programme)


def test_a_staff_change_never_reseals_a_case_another_command_changed(
    programme: Programme,
) -> None:
    """A new recipient for a caseworker re-encrypts their cases. If one of them is
    changed while the staff change waits for the lock, the change exits 6 instead of
    re-sealing the version it read (which would drop the other command's note)."""
    case_id = programme.new_case()
    _, recipient = crypto.generate_identity()
    result, after = run_while_another_writes(
        programme, case_id, "staff", "update", "cw-north-1", "--recipient", recipient, as_="pm-001"
    )
    assert_refused(
        result, REPOSITORY, programme, after, "another command was writing", "run this command"
    )
    shown = programme.cli("show", case_id, "--json")
    assert shown.exit_code == 0 and "CANARY-NOTE" in shown.stdout


def test_a_branch_moved_by_git_itself_exits_6(programme: Programme) -> None:
    """The branch moves only from the commit the change was made on (compare and swap).
    When git itself moved it in between, the change is busy (exit 6), not a git error."""
    case_id = programme.new_case()
    repo = programme.repo()
    parent = programme.git("rev-parse", "HEAD").strip()
    loaded = repo.load_open(case_id)
    other = programme.cli("record", case_id, "note", "--from", programme.form_file("note"))
    assert other.exit_code == 0, other.output
    before = programme.state()
    actor = repo.registry.get("cw-north-1")
    with pytest.raises(RepositoryBusy) as caught:
        unit.commit(repo, {loaded.path: b"x"}, "CP: edit", [], actor, parent)
    assert caught.value.exit_code == REPOSITORY
    assert "another command was writing" in str(caught.value)
    assert "run this command again" in str(caught.value)
    assert programme.state() == before
    assert CANARY not in str(caught.value) and ids.RECORDS_DIR not in str(caught.value)


@pytest.mark.parametrize("command", ["show", "record"])
def test_a_command_that_reads_a_case_mid_change_waits_for_its_writer(
    programme: Programme, command: str
) -> None:
    """Another command has moved the branch but not yet written the record file: a
    command reading the case then waits for the writer (it holds the lock) and reads the
    case as committed, instead of calling the file changed outside cmgit or uncommitted."""
    case_id = programme.new_case()
    done = programme.cli("record", case_id, "note", "--from", programme.form_file("note"))
    assert done.exit_code == 0, done.output
    path = programme.root / ids.record_path(case_id)
    written = path.read_bytes()
    before = programme.git("show", f"HEAD~1:{ids.record_path(case_id)}").encode()
    args = ["show", case_id] if command == "show" else ["record", case_id, "note"]
    if command == "record":
        args += ["--from", programme.form_file("note")]
    with holding_the_lock(programme):
        path.write_bytes(before)
        proc = spawn(programme, *args, env={"CMGIT_LOCK_TIMEOUT": "120"})
        wait_for_lock_open(proc, programme)
        path.write_bytes(written)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "CANARY-NOTE" in out if command == "show" else f"{case_id}: recorded" in out
    assert_consistent(programme)


# -- a lost laptop: the history the old key still opens ------------------------------------


def test_a_new_recipient_reports_the_history_the_old_key_still_opens(
    format_1_programme: Programme, tmp_path: Path
) -> None:
    """The lost-laptop case: `staff update --recipient` wraps the caseworker's case keys
    for the new key and, as `staff deactivate` does, lists each version in the history
    that the old key still opens: those sealed to people's keys before record format 2."""
    programme = format_1_programme
    first = programme.new_case()
    added = programme.cli("record", first, "note", "--from", programme.form_file("note"))
    assert added.exit_code == 0, added.output
    second = programme.new_case()
    south = programme.new_case(as_="cw-south-1")
    migrated(programme)
    secret, recipient = crypto.generate_identity()
    new_key = tmp_path / "new-laptop.txt"
    crypto.write_identity_file(new_key, secret, recipient)

    updated = programme.cli("staff", "update", "cw-north-1", "--recipient", recipient, as_="pm-001")
    assert updated.exit_code == 0, updated.output
    lines = updated.stdout.splitlines()
    assert lines[0] == "Updated cw-north-1; re-encrypted 2 case(s)"
    assert lines[1] == (
        "Their old key still opens 3 earlier version(s) of 2 case(s) in the history; "
        "destroy every copy of it:"
    )
    assert sorted(lines[2:]) == sorted([f"  {first}  version(s) 1, 2", f"  {second}  version(s) 1"])
    assert south not in updated.stdout and CANARY not in updated.output

    lost = programme.cli("show", first)  # the old key opens no current version
    assert lost.exit_code != 0
    found = programme.cli("show", first, env={"CMGIT_IDENTITY": str(new_key)}, as_=None)
    assert found.exit_code == 0, found.output


def test_a_new_recipient_lists_each_readable_version_as_json(
    format_1_programme: Programme,
) -> None:
    programme = format_1_programme
    case_id = programme.new_case()
    sealed = programme.git("log", "--format=%H", "-1").strip()
    migrated(programme)
    _, recipient = crypto.generate_identity()
    updated = programme.cli(
        "staff", "update", "cw-north-1", "--recipient", recipient, "--json", as_="pm-001"
    )
    assert updated.exit_code == 0, updated.output
    doc = json.loads(updated.stdout)
    assert doc == {
        "staff": "cw-north-1",
        "reencrypted": 1,
        "history_readable": [{"case_id": case_id, "version": 1, "commit": sealed}],
    }
    moved = programme.cli("staff", "update", "cw-north-2", "--team", "south", as_="pm-001")
    assert moved.exit_code == 0 and "still opens" not in moved.stdout


def test_a_new_recipient_in_format_2_leaves_no_history_to_list(programme: Programme) -> None:
    """In record format 2 from the start every version was sealed to a case key, and
    the old key's wrapping of it is destroyed: nothing in the history to list."""
    case_id = programme.new_case()
    _, recipient = crypto.generate_identity()
    updated = programme.cli(
        "staff", "update", "cw-north-1", "--recipient", recipient, "--json", as_="pm-001"
    )
    assert updated.exit_code == 0, updated.output
    assert json.loads(updated.stdout) == {
        "staff": "cw-north-1",
        "reencrypted": 1,
        "history_readable": [],
    }
    assert programme.cli("show", case_id).exit_code != 0


# -- a record sealed to an outsider in place of the programme manager ----------------------


def seal_to_outsider_instead_of(programme: Programme, case_id: str, staff_id: str) -> str:
    """What a hostile caseworker can do with their own key and plain git: unwrap the
    case key and wrap it again, to an outsider in place of ``staff_id``, keeping the
    number of recipients, in a keyring commit of their own. The short id of the commit."""
    repo = programme.repo()
    loaded = repo.load_open(case_id)
    key = casekeys.open_key(repo, case_id, programme.identities("cw-north-1"))
    replaced = repo.registry.get(staff_id).recipient
    _, outsider = crypto.generate_identity()
    recipients = [
        outsider if r == replaced else r
        for r in casekeys.staff_recipients(repo, loaded.record.open)
    ]
    assert outsider in recipients
    files = {
        **keyring_files(programme, case_id),
        STAFF_FILE: crypto.seal_binary(wrap.key_file(key), recipients),
    }
    plant_keyring(programme, case_id, files, Author("cw-north-1", "cw-north-1@cmgit.invalid"))
    return programme.git("log", "-1", "--format=%h", ref.shard_ref(case_id)).strip()


@pytest.mark.parametrize("pool_from", [200, 1], ids=["in-process", "forked-workers"])
def test_validate_names_a_record_sealed_without_the_manager_as_a_tamper_alarm(
    programme: Programme, pool_from: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manager's `validate` names every record sealed without them as a tamper alarm
    with the commit that sealed it, and exits non-zero; the other records stay valid.
    The caseworker, who can open it, sees nothing wrong: only the one left out can tell."""
    monkeypatch.setattr(store, "POOL_FROM", pool_from)
    fine = programme.new_case()
    tampered = programme.new_case()
    commit = seal_to_outsider_instead_of(programme, tampered, "pm-001")

    checked = programme.cli("validate", as_="pm-001")
    assert checked.exit_code != 0
    lines = checked.stdout.splitlines()
    assert f"{fine}  ok" in lines
    assert (
        f"{tampered}  TAMPER ALARM  sealed without your key by commit {commit} "
        f"(see cmgit log {tampered} and cmgit audit)"
    ) in lines
    assert "1 valid, 1 invalid, 1 sealed without you: tamper alarm" in checked.stderr
    assert CANARY not in checked.output

    as_json = programme.cli("validate", tampered, "--json", as_="pm-001")
    assert as_json.exit_code == checked.exit_code
    [row] = json.loads(as_json.stdout)
    assert row["ok"] is False and row["sealed_without_you_by"] == commit

    by_caseworker = programme.cli("validate", tampered)
    assert by_caseworker.exit_code == 0 and f"{tampered}  ok" in by_caseworker.stdout


def test_show_of_a_record_sealed_without_the_manager_points_to_validate(
    programme: Programme,
) -> None:
    case_id = programme.new_case()
    seal_to_outsider_instead_of(programme, case_id, "pm-001")
    before = programme.state()
    shown = programme.cli("show", case_id, as_="pm-001")
    line = assert_refused(shown, INVALID_RECORD, programme, before, "sealed without your key")
    assert case_id in line and "run cmgit validate" in line


# -- plaintext left by a killed `cmgit edit` ------------------------------------------------


def editor_that_waits(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """An editor that writes the path it was given and its own process id, then waits."""
    seen = tmp_path / "seen.txt"
    editor = tmp_path / "editor.py"
    editor.write_text(
        "import os, sys, time\n"
        f"open({str(seen)!r}, 'w').write(sys.argv[1] + ' ' + str(os.getpid()))\n"
        "time.sleep(600)\n"
    )
    return seen, {"EDITOR": f"{sys.executable} {editor}"}


def process_gone(pid: int) -> bool:
    """Whether ``pid`` has ended (a zombie nobody has reaped yet counts as ended)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return text.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def start_time(pid: int) -> str:
    """Field 22 of /proc/PID/stat: when the process started."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[19]


def test_a_killed_edit_is_warned_about_and_cleaned_only_once_its_editor_is_gone(
    programme: Programme, tmp_path: Path
) -> None:
    """SIGKILL of `cmgit edit` alone leaves its editor running on the plaintext file.
    Every later command warns in one line (no personal data) and names `cmgit recover`;
    recover keeps the file while the orphaned editor runs, and removes it once the editor
    is gone; then the warnings stop."""
    case_id = programme.new_case()
    seen, env = editor_that_waits(tmp_path)
    proc = spawn(programme, "edit", case_id, env=env)
    editor_pid = 0
    try:
        deadline = time.monotonic() + 60
        while not (seen.exists() and seen.read_text()):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        name, pid = seen.read_text().split()
        left, editor_pid = Path(name), int(pid)
        os.kill(proc.pid, signal.SIGKILL)  # cmgit alone: its editor lives on
        proc.wait(timeout=60)  # (the editor holds the output pipes open)
        assert not process_gone(editor_pid)
        assert CANARY.encode() in left.read_bytes()

        listed = programme.cli("list")
        assert listed.exit_code == 0, listed.output
        warning = (
            f"warning: a stopped cmgit edit left 1 unencrypted edit file(s) in {left.parent}; "
            "run cmgit recover to remove them (close its editor first)"
        )
        assert listed.stderr.splitlines()[0] == warning
        assert CANARY not in listed.output and case_id not in listed.stderr

        kept = programme.cli("recover", as_=None)
        assert kept.exit_code == 0, kept.output
        assert left.exists() and "removed an edit file" not in kept.stdout
        assert "its editor" not in kept.stdout
        assert f"kept an edit file in {left.parent}" in kept.stderr
        assert "is still running; close it, then run cmgit recover again" in kept.stderr
    finally:
        if editor_pid:
            os.kill(editor_pid, signal.SIGKILL)
        proc.kill()
        proc.communicate(timeout=60)
    deadline = time.monotonic() + 60
    while not process_gone(editor_pid):
        assert time.monotonic() < deadline
        time.sleep(0.05)

    warned = programme.cli("show", case_id, "--json")
    assert warned.exit_code == 0 and "warning: a stopped cmgit edit left 1" in warned.stderr
    assert "close its editor first" not in warned.stderr

    cleaned = programme.cli("recover", as_=None)
    assert cleaned.exit_code == 0, cleaned.output
    assert f"removed an edit file left in {left.parent}" in cleaned.stdout
    assert list(left.parent.iterdir()) == []  # the edit file and its owner file
    quiet = programme.cli("list")
    assert quiet.exit_code == 0 and "warning" not in quiet.stderr


def test_a_process_that_reused_the_id_is_not_taken_for_the_session(
    programme: Programme,
) -> None:
    """The owner file notes each process with its start time: another process that got
    the same id later is not the session's, while the editor itself keeps the file."""
    folder = editing.private_folder()
    left = folder / f"{editing.PREFIX}{os.getpid()}-abcdefgh.yaml"
    left.write_text(f"text: {CANARY}\n")
    other = subprocess.Popen(["sleep", "600"])
    try:
        owner = folder / f".{left.name}.owner"
        # cmgit's id is now another process's; the editor's is that process, same start.
        owner.write_text(f"{other.pid} 1\n{other.pid} {start_time(other.pid)}\n")
        kept = programme.cli("recover", as_=None)
        assert kept.exit_code == 0 and left.exists() and "kept an edit file" in kept.stderr
        # The editor's id too belongs to another process by now: the session is gone.
        owner.write_text(f"{other.pid} 1\n{other.pid} 2\n")
        done = programme.cli("recover", as_=None)
        assert done.exit_code == 0 and "removed an edit file" in done.stdout
        assert not left.exists() and not owner.exists()
    finally:
        other.kill()
        other.wait()


def test_the_private_folder_is_the_person_s_own_runtime_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$XDG_RUNTIME_DIR only they can enter; one others can enter is not used."""
    own = tmp_path / "own"
    own.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(own))
    assert editing.private_folder() == own
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(shared))
    assert editing.private_folder() != shared
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative")
    assert editing.private_folder() != Path("relative")
