"""Git faults (hostile G1-G14) against the real command line, real repositories and keys.

G4 (SIGKILL at each stage of a change) lives in test_crash.py. Where a row is covered
elsewhere, the test here adds the end-to-end refusal assertions and names that test.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cmgit import entries, ids
from cmgit.history import format_message

from ..conftest import CANARY, Programme
from ..test_audit import forge
from ..test_hooks import run_git
from ..test_signing import require_signatures, ssh_key
from ..test_sync import offices
from .faults_support import (
    assert_consistent,
    assert_refused,
    files_with_canary,
    forge_commit,
    git_ok,
    run,
)


def audit_rules(programme: Programme, root: Path | None = None) -> tuple[int, set[str]]:
    result = programme.cli("-C", str(root or programme.root), "audit", "--json", as_=None)
    report = json.loads(result.stdout)
    assert CANARY not in result.output
    return result.exit_code, {v["rule"] for v in report["violations"]}


def loose_objects(programme: Programme) -> set[Path]:
    return set((programme.root / ".git" / "objects").glob("??/*"))


def case_trailers(
    case_id: str, action: str, actor: str, role: str, version: int = 2
) -> list[tuple[str, str]]:
    return [
        ("Cmgit-Case", case_id),
        ("Cmgit-Action", action),
        ("Cmgit-Version", str(version)),
        ("Cmgit-Date", "2026-04-01"),
        ("Cmgit-Actor", actor),
        ("Cmgit-Role", role),
    ]


def central_with_hook(programme: Programme, tmp_path: Path, *flags: str) -> Path:
    server = tmp_path / "central.git"
    assert (
        run_git(tmp_path, "clone", "-q", "--bare", str(programme.root), str(server)).returncode == 0
    )
    assert (
        programme.cli("-C", str(server), "hooks", "install", "--server", *flags, as_=None).exit_code
        == 0
    )
    run_git(programme.root, "remote", "add", "origin", str(server))
    return server


# -- G1 dirty tree -------------------------------------------------------------------------


def test_G1_dirty_record_or_registry_refuses_and_lists_the_paths(programme: Programme) -> None:
    """G1: "refuse, list the paths" for a modified or staged record the command touches
    and for a modified staff registry (extends test_cases_e2e's dirty-record test)."""
    case_id = programme.new_case()
    path = ids.record_path(case_id)
    record = programme.root / path
    record.write_bytes(record.read_bytes() + b"\n")
    before = programme.state()
    refused = programme.cli("record", case_id, "note", "--from", programme.form_file("note"))
    assert_refused(refused, 6, programme, before, "uncommitted", path)
    programme.git("add", path)
    before = programme.state()
    refused = programme.cli("move", case_id, "closed", "--reason", "duplicate", as_="sv-north")
    assert_refused(refused, 6, programme, before, "uncommitted", path)
    # Staged, with the work tree back as committed: only the index differs.
    committed = programme.git("show", f"HEAD:{path}").encode()
    record.write_bytes(committed)
    before = programme.state()
    refused = programme.cli("move", case_id, "closed", "--reason", "duplicate", as_="sv-north")
    assert_refused(refused, 6, programme, before, "uncommitted", path)
    programme.git("reset", "-q", "--hard")
    record.chmod(0o755)  # the content as committed, the mode not
    before = programme.state()
    refused = programme.cli("move", case_id, "closed", "--reason", "duplicate", as_="sv-north")
    assert_refused(refused, 6, programme, before, "uncommitted", path)
    programme.git("reset", "-q", "--hard")
    staff = programme.root / "staff.yaml"
    staff.write_bytes(staff.read_bytes() + b"\n")
    before = programme.state()
    refused = programme.cli("staff", "deactivate", "aud-001", as_="pm-001")
    assert_refused(refused, 6, programme, before, "uncommitted", "staff.yaml")


def test_G1_unrelated_dirty_file_is_never_committed(programme: Programme) -> None:
    """G1 (nearest behaviour, SPEC section 4: dirty *records the command touches* refuse):
    an unrelated modified record, a staged change and an untracked file stay exactly as
    they were and out of the commit, as pass commits only the file it wrote."""
    case_id, other = programme.new_case(), programme.new_case()
    dirty = programme.root / ids.record_path(other)
    dirty.write_bytes(dirty.read_bytes() + b"\n")
    (programme.root / "records" / "stray.txt").write_text("x")
    (programme.root / "notes.txt").write_text("y")
    programme.git("add", "notes.txt")
    status = programme.git("status", "--porcelain", "--untracked-files=all")
    done = programme.cli("record", case_id, "note", "--from", programme.form_file("note"))
    assert done.exit_code == 0, done.output
    changed = programme.git("show", "--name-only", "--format=", "HEAD").split()
    assert changed == [ids.record_path(case_id), entries.entry_path(case_id, 2)]
    assert programme.git("status", "--porcelain", "--untracked-files=all") == status


# -- G2 index.lock -------------------------------------------------------------------------


def hold_open(path: Path) -> subprocess.Popen[bytes]:
    """A live process holding ``path`` open, as git holds its index.lock."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import time; f = open({str(path)!r}, 'w'); print('ok', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None and holder.stdout.readline() == b"ok\n"
    return holder


def test_G2_live_index_lock_waits_then_reports_busy(programme: Programme) -> None:
    """G2: index.lock held by a live process: "wait up to timeout then repository busy";
    recover refuses to remove it."""
    case_id = programme.new_case()
    lock = programme.root / ".git" / "index.lock"
    holder = hold_open(lock)
    try:
        before = programme.state()
        started = time.monotonic()
        refused = run(
            programme,
            "record",
            case_id,
            "note",
            "--from",
            programme.form_file("note"),
            env={"CMGIT_LOCK_TIMEOUT": "1"},
        )
        assert time.monotonic() - started >= 1
        assert_refused(refused, 6, programme, before, "repository is busy", "index.lock")
        kept = run(programme, "recover", as_=None)
        assert kept.returncode == 6 and "busy" in kept.stderr and lock.exists()
    finally:
        holder.kill()
        holder.wait()
        lock.unlink()
    assert (
        programme.cli("record", case_id, "note", "--from", programme.form_file("note")).exit_code
        == 0
    )


@pytest.mark.parametrize("name", ["index.lock", "HEAD.lock", "refs/heads/{branch}.lock"])
def test_G2_stale_git_lock_points_to_recover(programme: Programme, name: str) -> None:
    """G2: "stale lock: refuse and point to recover"; recover removes it and says so. A git
    killed while it moves the branch leaves the branch's lock, as one killed while it
    writes the index leaves index.lock."""
    case_id = programme.new_case()
    name = name.format(branch=programme.git("branch", "--show-current").strip())
    lock = programme.root / ".git" / name
    lock.write_bytes(b"")  # what a killed git leaves
    before = programme.state()
    # A stale lock is reported at once: with an hour to wait, run's deadline would end a
    # command that waited for it.
    refused = run(
        programme,
        "record",
        case_id,
        "note",
        "--from",
        programme.form_file("note"),
        env={"CMGIT_LOCK_TIMEOUT": "3600"},
    )
    assert_refused(refused, 6, programme, before, name, "cmgit recover")
    done = run(programme, "recover", as_=None)
    assert done.returncode == 0 and name in done.stdout
    assert not lock.exists()
    assert (
        programme.cli("record", case_id, "note", "--from", programme.form_file("note")).exit_code
        == 0
    )
    assert_consistent(programme)


def test_G2_recover_keeps_a_stale_index_lock_while_cmgit_runs(programme: Programme) -> None:
    """G2: recover removes a stale index.lock only when no live cmgit holds its lock."""
    programme.new_case()
    index_lock = programme.root / ".git" / "index.lock"
    index_lock.write_bytes(b"")
    fd = os.open(programme.root / ".git" / "cmgit" / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        busy = run(programme, "recover", as_=None, env={"CMGIT_LOCK_TIMEOUT": "0.5"})
    finally:
        os.close(fd)
    assert busy.returncode == 6 and "another cmgit command" in busy.stderr
    assert index_lock.exists()


# -- G3 operations in progress -------------------------------------------------------------


def test_G3_operation_in_progress_or_detached_head_refuses(programme: Programme) -> None:
    """G3: detached HEAD, merge/rebase/cherry-pick/revert/bisect in progress: refuse
    (extends test_cases_e2e's merge and detached tests)."""
    case_id = programme.new_case()
    git_dir = programme.root / ".git"
    head = programme.git("rev-parse", "HEAD")
    for marker in (
        "MERGE_HEAD",
        "rebase-merge",
        "rebase-apply",
        "CHERRY_PICK_HEAD",
        "REVERT_HEAD",
        "BISECT_LOG",
        "detached",
    ):
        if marker == "detached":
            programme.git("checkout", "-q", "--detach")
        elif marker.startswith("rebase"):
            (git_dir / marker).mkdir()
        else:
            (git_dir / marker).write_text(head)
        before = programme.state()
        refused = programme.cli("record", case_id, "note", "--from", programme.form_file("note"))
        word = "detached" if marker == "detached" else "in progress"
        assert_refused(refused, 6, programme, before, word)
        if marker.startswith("rebase"):
            (git_dir / marker).rmdir()
        elif marker != "detached":
            (git_dir / marker).unlink()


# -- G5 signing fails ----------------------------------------------------------------------


def test_G5_signing_failure_creates_no_commit(programme: Programme, tmp_path: Path) -> None:
    """G5: signing fails (no key, missing, unreadable, wrong key): "no commit created;
    index restored" (extends test_signing's required-signature test)."""
    require_signatures(programme, tmp_path)
    keys = tmp_path / "keys"
    keys.mkdir()
    fifo = keys / "fifo"
    os.mkfifo(fifo, 0o600)
    not_a_key = keys / "not-a-key"
    not_a_key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n")
    not_a_key.chmod(0o600)
    open_key, _ = ssh_key(keys, "cw")
    open_key.chmod(0o644)
    stranger, _ = ssh_key(keys, "stranger")
    problems = {
        "none": None,
        "missing": keys / "missing",
        "directory": keys,
        "fifo": fifo,
        "not a key": not_a_key,
        "readable by others": open_key,
        "wrong key": stranger,
    }
    for problem, key in problems.items():
        env = {} if key is None else {"CMGIT_SIGNING_KEY": str(key)}
        objects = loose_objects(programme)
        before = programme.state()
        refused = programme.cli("new", "--from", programme.form_file("identification"), env=env)
        assert_refused(refused, 5, programme, before, "signed" if key is None else "signing")
        assert loose_objects(programme) == objects, problem  # not even a dangling commit


# -- G6-G9 offices and the central repository ----------------------------------------------


def test_G6_second_push_is_rejected_and_sync_replays(programme: Programme, tmp_path: Path) -> None:
    """G6: the second plain push is rejected non-fast-forward; `cmgit sync` replays on top;
    both changes present; history linear; audit passes (extends test_sync)."""
    first, second = programme.new_case(), programme.new_case()
    central, a, b = offices(programme, tmp_path)
    for office, case_id in ((a, first), (b, second)):
        assert (
            programme.cli(
                "-C", str(office), "record", case_id, "note", "--from", programme.form_file("note")
            ).exit_code
            == 0
        )
    assert run_git(a, "push", "-q", "origin", "main").returncode == 0
    rejected = run_git(b, "push", "-q", "origin", "main")
    assert rejected.returncode != 0 and "rejected" in rejected.stderr
    synced = programme.cli("-C", str(b), "sync")
    assert synced.exit_code == 0 and "1 replayed" in synced.stdout, synced.output
    tip = git_ok(central, "rev-parse", "main").stdout
    assert git_ok(b, "rev-parse", "HEAD").stdout == tip
    assert git_ok(central, "rev-list", "--merges", "main").stdout == ""
    for case_id in (first, second):
        shown = programme.cli("-C", str(b), "show", case_id, "--json")
        assert json.loads(shown.stdout)["note"]
    assert audit_rules(programme, b) == (0, set())
    assert_consistent(programme, b)


def test_G7_same_case_conflict_leaves_no_plaintext(programme: Programme, tmp_path: Path) -> None:
    """G7: two different moves of one case: sync stops with a field-level conflict; no
    plaintext in the work tree or `.merge_file_*`; nothing auto-merged (extends
    test_sync's conflicting-moves test)."""
    case_id = programme.walk("registered")
    _, a, b = offices(programme, tmp_path)
    assert programme.cli("-C", str(a), "move", case_id, "assessment").exit_code == 0
    assert programme.cli("-C", str(a), "sync").exit_code == 0
    assert (
        programme.cli(
            "-C", str(b), "move", case_id, "closed", "--reason", "death", as_="sv-north"
        ).exit_code
        == 0
    )
    before = (
        git_ok(b, "rev-parse", "HEAD").stdout,
        git_ok(b, "status", "--porcelain", "--untracked-files=all").stdout,
        git_ok(b, "ls-files", "-s").stdout,
    )
    refused = programme.cli("-C", str(b), "sync", as_="sv-north")
    assert refused.exit_code == 4
    first, *problems = refused.stderr.strip().splitlines()
    assert first.startswith("Error: ") and "/state" in refused.stderr
    assert all(p.startswith("  ") for p in problems)
    assert CANARY not in refused.output
    assert (
        git_ok(b, "rev-parse", "HEAD").stdout,
        git_ok(b, "status", "--porcelain", "--untracked-files=all").stdout,
        git_ok(b, "ls-files", "-s").stdout,
    ) == before
    assert list(b.rglob(".merge_file_*")) == [] and list(b.rglob("*.orig")) == []
    assert files_with_canary([b, Path(os.environ["TMPDIR"])]) == []


def test_G8_rewritten_central_history_is_refused(programme: Programme, tmp_path: Path) -> None:
    """G8: remote tip not a descendant of the last verified tip: sync refuses, one line,
    nothing changed (extends test_sync's rewritten-history test)."""
    case_id = programme.new_case()
    central, a, b = offices(programme, tmp_path)
    assert (
        programme.cli(
            "-C", str(a), "record", case_id, "note", "--from", programme.form_file("note")
        ).exit_code
        == 0
    )
    assert programme.cli("-C", str(a), "sync").exit_code == 0
    assert programme.cli("-C", str(b), "sync").exit_code == 0
    run_git(
        central,
        "update-ref",
        "refs/heads/main",
        run_git(central, "rev-parse", "main~1").stdout.strip(),
    )
    state = (git_ok(b, "rev-parse", "HEAD").stdout, git_ok(b, "ls-files", "-s").stdout)
    refused = programme.cli("-C", str(b), "sync")
    assert refused.exit_code == 6 and len(refused.stderr.strip().splitlines()) == 1
    assert "rewritten" in refused.stderr and CANARY not in refused.output
    assert (git_ok(b, "rev-parse", "HEAD").stdout, git_ok(b, "ls-files", "-s").stdout) == state
    assert_consistent(programme, b)


def test_G9_central_rejects_force_push_deletion_unsigned_and_stranger(
    programme: Programme, tmp_path: Path
) -> None:
    """G9: force push, branch deletion, unsigned commit, commit by a non-allowed signer:
    rejected by the server, whose branch stays where it was (extends test_hooks)."""
    _, cw_key = require_signatures(programme, tmp_path)
    stranger, _ = ssh_key(tmp_path, "stranger")
    made = programme.cli(
        "new",
        "--from",
        programme.form_file("identification"),
        env={"CMGIT_SIGNING_KEY": str(cw_key)},
    )
    case_id = made.stdout.strip()
    server = central_with_hook(programme, tmp_path)
    assert (
        programme.cli(
            "record",
            case_id,
            "note",
            "--from",
            programme.form_file("note"),
            env={"CMGIT_SIGNING_KEY": str(cw_key)},
        ).exit_code
        == 0
    )
    assert run_git(programme.root, "push", "-q", "origin", "main").returncode == 0
    tip = git_ok(server, "rev-parse", "main").stdout
    record = (programme.root / ids.record_path(case_id)).read_bytes()
    attempts = {
        "force push": lambda: run_git(programme.root, "reset", "-q", "--hard", "HEAD~1"),
        "deletion": lambda: None,
        "unsigned": lambda: forge(
            programme,
            {"records/.gitkeep": b"x"},
            f"{case_id}: edit",
            case_trailers(case_id, "edit", "cw-north-1", "caseworker"),
            "cw-north-1",
        ),
        "stranger": lambda: forge(
            programme,
            {ids.record_path(case_id): record + b"\n"},
            f"{case_id}: edit",
            case_trailers(case_id, "edit", "cw-north-1", "caseworker"),
            "cw-north-1",
            sign_with=stranger,
        ),
    }
    for name, prepare in attempts.items():
        prepare()
        refspec = ":main" if name == "deletion" else "+main:main"
        pushed = run_git(programme.root, "push", "-q", "origin", refspec)
        assert pushed.returncode != 0, name
        assert CANARY not in pushed.stderr
        assert git_ok(server, "rev-parse", "main").stdout == tip, name
        run_git(programme.root, "reset", "-q", "--hard", tip.strip())
    assert git_ok(server, "fsck", "--strict", "--no-progress").returncode == 0


# -- G10 corrupt objects -------------------------------------------------------------------


def test_G10_corrupt_loose_object_is_named_by_audit(programme: Programme) -> None:
    """G10: a corrupt loose object: "verify fails (fsck), names the object" (extends
    test_audit's corrupted-object test)."""
    case_id = programme.new_case()
    blob = programme.git("rev-parse", f"HEAD:{ids.record_path(case_id)}").strip()
    obj = programme.root / ".git" / "objects" / blob[:2] / blob[2:]
    obj.chmod(0o644)
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0xFF
    obj.write_bytes(bytes(data))
    result = programme.cli("audit", "--json", as_=None)
    assert result.exit_code == 6
    details = [v["detail"] for v in json.loads(result.stdout)["violations"] if v["rule"] == "fsck"]
    assert f"damaged or missing object {blob}" in details
    assert CANARY not in result.output


@pytest.mark.parametrize("where", ["first object", pytest.param("middle", marks=pytest.mark.slow)])
def test_G10_corrupt_pack_byte_is_named_by_audit(programme: Programme, where: str) -> None:
    """G10: a flipped byte in a pack: audit fails naming the object, also when the damage
    stops the walk itself (no bare "git failed"). The objects are those of the history
    audit judges (the keyring's, packed here too, are no part of it)."""
    programme.new_case()
    programme.git("repack", "-adq")
    history = set(programme.git("rev-list", "--objects", "--no-object-names", "HEAD").split())
    pack = next((programme.root / ".git" / "objects" / "pack").glob("*.pack"))
    index = pack.with_suffix(".idx")
    listing = subprocess.run(
        ["git", "verify-pack", "-v", str(index)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    offsets = sorted(
        (int(line.split()[4]), line.split()[0])
        for line in listing
        if len(line.split()) >= 5
        and line.split()[1] in ("commit", "tree", "blob")
        and line.split()[0] in history
    )
    offset, oid = offsets[0] if where == "first object" else offsets[len(offsets) // 2]
    pack.chmod(0o644)
    data = bytearray(pack.read_bytes())
    data[offset + 5] ^= 0xFF
    pack.write_bytes(bytes(data))
    result = programme.cli("audit", "--json", as_=None)
    assert result.exit_code == 6, result.output
    details = [v["detail"] for v in json.loads(result.stdout)["violations"] if v["rule"] == "fsck"]
    assert f"damaged or missing object {oid}" in details, (oid, details)
    assert CANARY not in result.output


# -- G11 signature semantics ---------------------------------------------------------------


def test_G11_signer_other_than_committer_fails_audit(programme: Programme, tmp_path: Path) -> None:
    """G11: signer != committer: "fails verify" (git says G for it)."""
    _, cw_key = require_signatures(programme, tmp_path)
    made = programme.cli(
        "new",
        "--from",
        programme.form_file("identification"),
        env={"CMGIT_SIGNING_KEY": str(cw_key)},
    )
    case_id = made.stdout.strip()
    assert audit_rules(programme) == (0, set())
    record = (programme.root / ids.record_path(case_id)).read_bytes()
    forge_commit(
        programme.root,
        {ids.record_path(case_id): record + b"\n"},
        format_message(
            f"{case_id}: edit", case_trailers(case_id, "edit", "cw-north-1", "caseworker")
        ),
        author="cw-north-1 <cw-north-1@cmgit.invalid>",
        committer="pm-001 <pm-001@cmgit.invalid>",
        sign_with=cw_key,
    )
    code, rules = audit_rules(programme)
    assert code == 6 and "actor" in rules


def test_G11_backdated_commit_by_deactivated_staff_fails_audit(
    programme: Programme, tmp_path: Path
) -> None:
    """G11: a commit signed with a key after its holder was deactivated, dated before:
    fails verify (the registry of the parent commit decides, not the date)."""
    pm_key, cw_key = require_signatures(programme, tmp_path)
    pm = {"CMGIT_SIGNING_KEY": str(pm_key)}
    leaver_key, leaver_pub = ssh_key(tmp_path, "leaver")
    assert (
        programme.cli(
            "staff", "update", "cw-north-2", "--signing-key", leaver_pub, as_="pm-001", env=pm
        ).exit_code
        == 0
    )
    made = programme.cli(
        "new",
        "--from",
        programme.form_file("identification"),
        env={"CMGIT_SIGNING_KEY": str(cw_key)},
    )
    assert made.exit_code == 0, made.output
    case_id = made.stdout.strip()
    assert programme.cli("staff", "deactivate", "cw-north-2", as_="pm-001", env=pm).exit_code == 0
    assert audit_rules(programme) == (0, set())
    record = (programme.root / ids.record_path(case_id)).read_bytes()
    forge_commit(
        programme.root,
        {ids.record_path(case_id): record + b"\n"},
        format_message(
            f"{case_id}: edit", case_trailers(case_id, "edit", "cw-north-2", "caseworker")
        ),
        author="cw-north-2 <cw-north-2@cmgit.invalid>",
        when=1_700_000_000,
        sign_with=leaver_key,
    )
    result = programme.cli("audit", "--json", as_=None)
    assert result.exit_code == 6
    details = {v["rule"]: v["detail"] for v in json.loads(result.stdout)["violations"]}
    assert "not active staff" in details["actor"]


def test_G11_revoked_key_fails_audit(programme: Programme, tmp_path: Path) -> None:
    """G11: "key in revocation list" (nearest behaviour: the registry has no revocation
    list; a key replaced in the registry is revoked): a commit signed with it fails."""
    pm_key, cw_key = require_signatures(programme, tmp_path)
    new_key, new_pub = ssh_key(tmp_path, "cw-new")
    assert (
        programme.cli(
            "staff",
            "update",
            "cw-north-1",
            "--signing-key",
            new_pub,
            as_="pm-001",
            env={"CMGIT_SIGNING_KEY": str(pm_key)},
        ).exit_code
        == 0
    )
    made = programme.cli(
        "new",
        "--from",
        programme.form_file("identification"),
        env={"CMGIT_SIGNING_KEY": str(new_key)},
    )
    assert made.exit_code == 0, made.output
    refused = programme.cli(
        "new",
        "--from",
        programme.form_file("identification"),
        env={"CMGIT_SIGNING_KEY": str(cw_key)},
    )
    assert refused.exit_code == 5 and "not the one registered" in refused.stderr
    case_id = made.stdout.strip()
    record = (programme.root / ids.record_path(case_id)).read_bytes()
    forge_commit(
        programme.root,
        {ids.record_path(case_id): record + b"\n"},
        format_message(
            f"{case_id}: edit", case_trailers(case_id, "edit", "cw-north-1", "caseworker")
        ),
        author="cw-north-1 <cw-north-1@cmgit.invalid>",
        when=1_700_000_000,
        sign_with=cw_key,
    )
    code, rules = audit_rules(programme)
    assert code == 6 and "signature" in rules


# -- G12 attributes, hooks and policy files ------------------------------------------------


def test_G12_policy_file_changed_by_a_non_admin_fails_audit(
    programme: Programme, tmp_path: Path
) -> None:
    """G12: `.gitattributes`, hooks config or policy files changed by a non-admin commit:
    "verify fails"; the central repository refuses the push."""
    case_id = programme.new_case()
    server = central_with_hook(programme, tmp_path, "--allow-unsigned")
    tip = programme.git("rev-parse", "HEAD")
    for path in (
        ".githooks/pre-commit",
        ".pre-commit-config.yaml",
        "schemas/workflow.yaml",
        "settings.yaml",
        ".gitattributes",
    ):
        current = programme.root / path
        data = (current.read_bytes() if current.exists() else b"") + b"\n# changed\n"
        if path == ".gitattributes":
            data = b"records/** -diff -merge filter=plain\n"
        forge(
            programme,
            {path: data},
            f"{case_id}: edit",
            case_trailers(case_id, "edit", "cw-north-1", "caseworker"),
            "cw-north-1",
        )
        code, rules = audit_rules(programme)
        assert code == 6 and "paths" in rules, path
        if path != ".gitattributes":
            programme.git("reset", "-q", "--hard", tip.strip())
    pushed = run_git(programme.root, "push", "-q", "origin", "main")
    assert pushed.returncode != 0 and "paths" in pushed.stderr
    assert git_ok(server, "rev-parse", "main").stdout == tip


def test_G12_policy_file_slipped_into_an_admin_change_fails_audit(programme: Programme) -> None:
    """G12: even a programme manager's settings change may not carry other files."""
    settings = (programme.root / "settings.yaml").read_bytes()
    forge(
        programme,
        {"settings.yaml": settings + b"\n", ".gitattributes": b"records/** -diff\n"},
        "settings: set reader_roles",
        [
            ("Cmgit-Action", "settings-set"),
            ("Cmgit-Setting", "reader_roles"),
            ("Cmgit-Actor", "pm-001"),
            ("Cmgit-Role", "programme_manager"),
        ],
        "pm-001",
    )
    code, rules = audit_rules(programme)
    assert code == 6 and "paths" in rules


# -- G13 shallow and partial clones --------------------------------------------------------


def test_G13_shallow_clone_refuses_full_audit_and_checks_from_a_checkpoint(
    programme: Programme, tmp_path: Path
) -> None:
    """G13: shallow clone: "verify refuses full verification; allowed from a (signed)
    checkpoint" (cmgit has no signed checkpoint: --since a commit the auditor trusts)."""
    programme.new_case()
    programme.new_case()
    shallow = tmp_path / "shallow"
    assert (
        run_git(
            tmp_path, "clone", "-q", "--depth", "3", f"file://{programme.root}", str(shallow)
        ).returncode
        == 0
    )
    before = git_ok(shallow, "rev-parse", "HEAD").stdout
    refused = programme.cli("-C", str(shallow), "audit", as_=None)
    assert refused.exit_code == 6 and len(refused.stderr.strip().splitlines()) == 1
    assert "shallow" in refused.stderr and "--since" in refused.stderr
    assert not (shallow / ".git" / "cmgit" / "audit-verified").exists()
    checked = programme.cli("-C", str(shallow), "audit", "--since", "HEAD~2", as_=None)
    assert checked.exit_code == 0, checked.output
    assert "2 commit(s) checked" in checked.stderr
    assert git_ok(shallow, "rev-parse", "HEAD").stdout == before


def test_G13_partial_clone_refuses_full_audit(programme: Programme, tmp_path: Path) -> None:
    """G13: partial clone (blobs left on the server): full verification refused."""
    programme.new_case()
    partial = tmp_path / "partial"
    programme.git("config", "uploadpack.allowFilter", "true")
    cloned = run_git(
        tmp_path, "clone", "-q", "--filter=blob:none", f"file://{programme.root}", str(partial)
    )
    assert cloned.returncode == 0 and "filter" not in cloned.stderr, cloned.stderr
    refused = programme.cli("-C", str(partial), "audit", as_=None)
    assert refused.exit_code == 6 and "partial" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


# -- G14 one change, one case --------------------------------------------------------------


def test_G14_commit_touching_two_cases_is_refused(programme: Programme, tmp_path: Path) -> None:
    """G14: a commit touching two cases: refused by audit and by the server hook (the CLI
    cannot make one: each command changes one record)."""
    first, second = programme.new_case(), programme.new_case()
    server = central_with_hook(programme, tmp_path, "--allow-unsigned")
    tip = git_ok(server, "rev-parse", "main").stdout
    files = {}
    for case_id in (first, second):
        path = ids.record_path(case_id)
        files[path] = (programme.root / path).read_bytes().replace(b"version: 1\n", b"version: 2\n")
    forge(
        programme,
        files,
        f"{first}: edit",
        case_trailers(first, "edit", "cw-north-1", "caseworker"),
        "cw-north-1",
    )
    code, rules = audit_rules(programme)
    assert code == 6 and "paths" in rules
    pushed = run_git(programme.root, "push", "-q", "origin", "main")
    assert pushed.returncode != 0 and "paths" in pushed.stderr and CANARY not in pushed.stderr
    assert git_ok(server, "rev-parse", "main").stdout == tip


def test_G14_open_fields_changed_with_the_registry_are_refused(
    programme: Programme, tmp_path: Path
) -> None:
    """G14: a staff change that also changes a record's open fields (SPEC section 5: it
    may re-encrypt records only with their open fields unchanged): audit and server
    refuse; a real staff change that re-encrypts passes."""
    case_id = programme.new_case()
    assert programme.cli("staff", "deactivate", "aud-001", as_="pm-001").exit_code == 0
    assert audit_rules(programme) == (0, set())
    server = central_with_hook(programme, tmp_path, "--allow-unsigned")
    tip = git_ok(server, "rev-parse", "main").stdout
    path = ids.record_path(case_id)
    staff = (
        (programme.root / "staff.yaml")
        .read_bytes()
        .replace(b"role: coordinator", b"role: supervisor")
    )
    record = (programme.root / path).read_bytes().replace(b"state: identified", b"state: closed")
    forge(
        programme,
        {"staff.yaml": staff, path: record},
        "staff: update co-north",
        [
            ("Cmgit-Action", "staff-update"),
            ("Cmgit-Staff", "co-north"),
            ("Cmgit-Actor", "pm-001"),
            ("Cmgit-Role", "programme_manager"),
        ],
        "pm-001",
    )
    code, rules = audit_rules(programme)
    assert code == 6 and "paths" in rules
    pushed = run_git(programme.root, "push", "-q", "origin", "main")
    assert pushed.returncode != 0 and "open fields" in pushed.stderr
    assert git_ok(server, "rev-parse", "main").stdout == tip
