"""The central repository is a trust boundary (issue #14): it takes commits on the
programme's one branch and nothing else.

Each attack is what a caseworker with push access could try with plain git against a
real bare repository with `cmgit hooks install --server`. Each is refused with its own
rule, and leaves the central repository exactly as it was: the same refs and the same
objects. A good push still lands afterwards.
"""

from __future__ import annotations

import os
import subprocess
import time
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

from cmgit import history

from ..conftest import CANARY, Programme
from ..test_hooks import run_git
from ..test_signing import require_signatures
from .test_git_faults import central_with_hook

LEAK = f"name: {CANARY}-Amina Yusuf, age 14\n"


@dataclass
class Central:
    """A programme pushing to a central bare repository that has the server hook."""

    programme: Programme
    server: Path
    signed: dict[str, str]  # the caseworker's signing key, for cmgit commands
    manager: dict[str, str]  # the programme manager's

    def git(self, *args: str) -> str:
        done = run_git(self.server, *args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def state(self) -> tuple[str, str]:
        """Every ref with its target, and every object the central repository stores."""
        return (
            self.git("for-each-ref", "--format=%(objectname) %(refname)"),
            self.git("cat-file", "--batch-all-objects", "--batch-check=%(objectname)"),
        )

    def push(self, *refspecs: str) -> subprocess.CompletedProcess[str]:
        return run_git(self.programme.root, "push", "-q", "origin", *refspecs)

    def refused(self, *refspecs: str, rule: str) -> str:
        """Push ``refspecs``: refused with ``rule`` in the message, nothing changed."""
        before = self.state()
        pushed = self.push(*refspecs)
        assert pushed.returncode != 0, refspecs
        assert rule in pushed.stderr, pushed.stderr
        assert CANARY not in pushed.stderr
        assert self.state() == before
        return pushed.stderr

    def good_commit(self) -> str:
        """A new signed cmgit commit on the local branch."""
        made = self.programme.cli(
            "new", "--from", self.programme.form_file("identification"), env=self.signed
        )
        assert made.exit_code == 0, made.output
        return self.programme.git("rev-parse", "HEAD").strip()

    def lands(self) -> None:
        """A good push still lands after whatever was refused."""
        tip = self.good_commit()
        pushed = self.push(f"{tip}:refs/heads/main")
        assert pushed.returncode == 0, pushed.stderr
        assert self.git("rev-parse", "refs/heads/main").strip() == tip


@pytest.fixture
def central(programme: Programme, tmp_path: Path) -> Central:
    pm_key, cw_key = require_signatures(programme, tmp_path)
    signed = {"CMGIT_SIGNING_KEY": str(cw_key)}
    made = programme.cli("new", "--from", programme.form_file("identification"), env=signed)
    assert made.exit_code == 0, made.output
    server = central_with_hook(programme, tmp_path)
    return Central(programme, server, signed, {"CMGIT_SIGNING_KEY": str(pm_key)})


def plain_git_record(programme: Programme) -> str:
    """A plaintext record committed with plain git, bypassing cmgit: the bad commit B."""
    (programme.root / "records" / "leak.yaml").write_text(LEAK)
    run_git(programme.root, "add", "records/leak.yaml")
    made = run_git(programme.root, "commit", "-q", "--no-verify", "-m", "leak")
    assert made.returncode == 0, made.stderr
    return programme.git("rev-parse", "HEAD").strip()


def plumbing(root: Path, data: str, *args: str) -> str:
    """What a git plumbing command reading ``data`` prints: an object it wrote."""
    done = subprocess.run(
        ["git", "-C", str(root), *args], input=data, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_replace_ref_cannot_clear_a_refused_commit(central: Central, tmp_path: Path) -> None:
    """Issue #14 point 1: B is refused on main; a replace ref showing the good commit G in
    place of B is refused; B stays refused."""
    good = central.git("rev-parse", "refs/heads/main").strip()
    bad = plain_git_record(central.programme)
    central.refused(f"{bad}:refs/heads/main", rule="record")
    stderr = central.refused(f"{good}:refs/replace/{bad}", rule="a replace ref")
    assert f"refs/replace/{bad}: a replace ref" in stderr
    assert "git replace -d" in stderr
    central.refused(f"{bad}:refs/heads/main", rule="record")
    # an auditor's mirror and a fresh clone hold neither the record nor a replacement
    mirror = tmp_path / "mirror.git"
    assert (
        run_git(tmp_path, "clone", "-q", "--mirror", str(central.server), str(mirror)).returncode
        == 0
    )
    assert run_git(mirror, "for-each-ref", "refs/replace").stdout == ""
    assert run_git(mirror, "cat-file", "-e", bad).returncode != 0
    run_git(central.programme.root, "reset", "-q", "--hard", "HEAD~1")
    central.lands()


def test_replace_ref_already_in_the_central_repository_is_ignored(central: Central) -> None:
    """A replace ref that reached the central repository some other way (before its hook
    was installed) does not make the hook read the good commit in place of the bad one."""
    good = central.git("rev-parse", "refs/heads/main").strip()
    bad = plain_git_record(central.programme)
    central.git("update-ref", f"refs/replace/{bad}", good)
    central.refused(f"{bad}:refs/heads/main", rule="record")
    run_git(central.programme.root, "reset", "-q", "--hard", "HEAD~1")
    central.lands()


def test_tags_are_refused_whatever_they_hold(central: Central) -> None:
    """Issue #14 point 2: a blob, a tree or an annotated tag holding a child's name, and
    a plain tag on a good commit, each pushed as a tag."""
    root = central.programme.root
    blob = plumbing(root, LEAK, "hash-object", "-w", "--stdin")
    tree = plumbing(root, f"100644 blob {blob}\t{CANARY}-amina-yusuf.txt\n", "mktree")
    assert run_git(root, "tag", "-a", "annotated", "-m", LEAK, "HEAD").returncode == 0
    for refspec in (
        f"{blob}:refs/tags/leak",
        f"{tree}:refs/tags/leak",
        "refs/tags/annotated:refs/tags/annotated",
        "HEAD:refs/tags/v1",
    ):
        stderr = central.refused(refspec, rule="a tag")
        assert "accepts only refs/heads/main" in stderr
        assert "git tag -d" in stderr
    # nor on the branch itself, where git would store it before refusing the ref
    central.refused("refs/tags/annotated:refs/heads/main", rule="commits only, not a tag")
    central.refused(f"+{blob}:refs/heads/main", rule="commits only, not a blob")
    # a tag pushed with a good update of main: the whole push is refused
    central.good_commit()
    central.refused("HEAD:refs/heads/main", "HEAD:refs/tags/v2", rule="a tag")
    central.lands()


def test_notes_are_refused(central: Central) -> None:
    root = central.programme.root
    assert run_git(root, "notes", "add", "-m", LEAK, "HEAD").returncode == 0
    central.refused("refs/notes/commits", rule="a notes ref")
    central.lands()


def test_other_branches_are_refused(central: Central) -> None:
    """Any branch name, even one naming a child and holding only good commits, and a
    ref outside refs/heads, refs/tags, refs/notes and refs/replace."""
    for ref in ("refs/heads/amina-yusuf-age14", "refs/heads/main2", "refs/custom/anything"):
        central.refused(f"HEAD:{ref}", rule="accepts only refs/heads/main")
    stderr = central.refused("HEAD:refs/heads/main2", rule="another branch")
    assert "cmgit sync" in stderr
    central.refused("HEAD:refs/custom/anything", rule="a ref outside the branches")
    central.lands()


def test_a_fabricated_root_history_on_another_branch_is_refused(
    central: Central, tmp_path: Path
) -> None:
    """An outsider's own programme, its first manager calling itself pm-001, pushed
    beside the real one."""
    fake = tmp_path / "fabricated"
    outsider = central.programme.cli("keygen", "-o", str(tmp_path / "outsider.txt"), as_=None)
    made = central.programme.cli(
        "init",
        str(fake),
        "--admin",
        "pm-001",
        "--recipient",
        outsider.stdout.strip(),
        "--unsigned",
        as_=None,
    )
    assert made.exit_code == 0, made.output
    run_git(central.programme.root, "fetch", "-q", str(fake), "main:refs/fabricated")
    stderr = central.refused("refs/fabricated:refs/heads/main2", rule="another branch")
    assert "refs/heads/main2" in stderr
    # on main itself it is a rewrite of the published history
    central.refused("+refs/fabricated:refs/heads/main", rule="force push refused")
    central.lands()


def receive_pack(server: Path, source: Path, old: str, new: str, extra: list[str]) -> str:
    """Push ``old``..``new`` to main the way a modified client could: one pack holding the
    update's objects and ``extra`` ones besides. What receive-pack reports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    listed = subprocess.run(
        ["git", "-C", str(source), "rev-list", "--objects", "--no-object-names", new, f"^{old}"],
        capture_output=True,
        check=True,
        env=env,
    ).stdout.split()
    pack = subprocess.run(
        ["git", "-C", str(source), "pack-objects", "--stdout", "-q"],
        input=b"\n".join([*listed, *(o.encode() for o in extra)]) + b"\n",
        capture_output=True,
        check=True,
        env=env,
    ).stdout
    command = f"{old} {new} refs/heads/main\0report-status\n".encode()
    request = f"{len(command) + 4:04x}".encode() + command + b"0000" + pack
    done = subprocess.run(
        ["git", "receive-pack", str(server)], input=request, capture_output=True, env=env
    )
    return (done.stdout + done.stderr).decode("utf-8", "replace")


def test_an_object_the_branch_does_not_reach_is_refused(central: Central) -> None:
    """A plaintext blob smuggled in the same pack as a good update of main."""
    root = central.programme.root
    old = central.git("rev-parse", "refs/heads/main").strip()
    new = central.good_commit()
    stray = plumbing(root, LEAK, "hash-object", "-w", "--stdin")
    tree = plumbing(root, f"100644 blob {stray}\t{CANARY}-amina-yusuf.txt\n", "mktree")
    before = central.state()
    report = receive_pack(central.server, root, old, new, [stray, tree])
    assert "ng refs/heads/main" in report
    assert "2 pushed object(s) not reachable from refs/heads/main, such as " in report
    assert f"{stray[:12]} (a blob)" in report and f"{tree[:12]} (a tree)" in report
    assert CANARY not in report
    assert central.state() == before
    # the same update without the stray object lands
    report = receive_pack(central.server, root, old, new, [])
    assert "ok refs/heads/main" in report, report
    assert central.git("rev-parse", "refs/heads/main").strip() == new


def test_a_malformed_object_is_refused_before_the_hook(central: Central) -> None:
    """A tree with an entry named .git (which would overwrite a clone's own repository on
    checkout) is refused while git receives it."""
    root = central.programme.root
    blob = plumbing(root, "x\n", "hash-object", "-w", "--stdin")
    entry = b"100644 .git\0" + bytes.fromhex(blob)
    tree = (
        subprocess.run(
            ["git", "-C", str(root), "hash-object", "-t", "tree", "-w", "--literally", "--stdin"],
            input=entry,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    commit = run_git(root, "commit-tree", tree, "-p", "HEAD", "-m", "edit").stdout.strip()
    before = central.state()
    pushed = central.push(f"{commit}:refs/heads/main")
    assert pushed.returncode != 0 and "cmgit: refused" not in pushed.stderr
    assert central.state() == before
    central.lands()


def commit_with_clock(central: Central, monkeypatch: pytest.MonkeyPatch, ahead: float) -> str:
    """A signed cmgit commit made on a computer whose clock is ``ahead`` seconds fast."""
    fast = types.SimpleNamespace(
        time=lambda: time.time() + ahead, monotonic=time.monotonic, sleep=time.sleep
    )
    with monkeypatch.context() as patch:
        patch.setattr(history, "time", fast)
        return central.good_commit()


def test_a_commit_dated_in_the_future_is_refused(
    central: Central, monkeypatch: pytest.MonkeyPatch
) -> None:
    future = commit_with_clock(central, monkeypatch, ahead=3 * 86_400)
    stderr = central.refused("HEAD:refs/heads/main", rule=f"{future[:12]} time:")
    assert "more than a day after this server's clock" in stderr
    assert "fix the clock" in stderr
    run_git(central.programme.root, "reset", "-q", "--hard", "HEAD~1")
    # a clock a few hours fast is within the day of tolerance
    commit_with_clock(central, monkeypatch, ahead=3 * 3600)
    assert central.push("HEAD:refs/heads/main").returncode == 0


def test_the_branch_is_the_setting_committed_at_the_tip(central: Central) -> None:
    """The `branch` setting names the one branch; main itself is refused once the
    settings at the central tip name another."""
    changed = central.programme.cli(
        "settings", "set", "branch", "cases", as_="pm-001", env=central.manager
    )
    assert changed.exit_code == 0, changed.output
    assert central.push("HEAD:refs/heads/main").returncode == 0
    tip = central.good_commit()
    stderr = central.refused("HEAD:refs/heads/main", rule="another branch")
    assert "accepts only refs/heads/cases" in stderr
    pushed = central.push("HEAD:refs/heads/cases")
    assert pushed.returncode == 0, pushed.stderr
    assert central.git("rev-parse", "refs/heads/cases").strip() == tip


def test_server_checks_name_every_ref_and_commit_a_hook_would_refuse(
    programme: Programme, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a host that runs no hook, everything lands; `cmgit audit --server-checks` on a
    mirror names each ref beside the branch and each commit the hook would refuse."""
    _, cw_key = require_signatures(programme, tmp_path)
    hosted = tmp_path / "hosted.git"
    assert (
        run_git(tmp_path, "clone", "-q", "--bare", str(programme.root), str(hosted)).returncode == 0
    )
    run_git(programme.root, "remote", "add", "origin", str(hosted))
    central = Central(programme, hosted, {"CMGIT_SIGNING_KEY": str(cw_key)}, {})
    mirror = tmp_path / "mirror.git"

    def checks(*extra: str) -> tuple[int, str, str]:
        if mirror.exists():
            assert run_git(mirror, "remote", "update", "--prune").returncode == 0
        else:
            cloned = run_git(tmp_path, "clone", "-q", "--mirror", str(hosted), str(mirror))
            assert cloned.returncode == 0
        done = programme.cli("-C", str(mirror), "audit", "--server-checks", *extra, as_=None)
        return done.exit_code, done.stdout, done.stderr

    code, out, err = checks()
    assert (code, out) == (0, "")
    assert "audit --server-checks: ok" in err

    good = central.git("rev-parse", "refs/heads/main").strip()
    bad = plain_git_record(programme)
    run_git(programme.root, "notes", "add", "-m", "x", good)
    for refspec in (
        f"{bad}:refs/heads/amina-yusuf-age14",
        f"{good}:refs/replace/{bad}",
        f"{good}:refs/tags/v1",
        "refs/notes/commits",
    ):
        assert central.push(refspec).returncode == 0, refspec
    run_git(programme.root, "reset", "-q", "--hard", good)
    future = commit_with_clock(central, monkeypatch, ahead=3 * 86_400)
    assert central.push("HEAD:refs/heads/main").returncode == 0

    code, out, err = checks()
    assert code == 6
    lines = out.splitlines()
    assert "refs/heads/amina-yusuf-age14: another branch beside refs/heads/main" in out
    assert f"refs/replace/{bad}: a replace ref" in out
    assert "refs/tags/v1: a tag beside refs/heads/main" in out
    assert "refs/notes/commits: a notes ref beside refs/heads/main" in out
    assert "what it holds could already be fetched" in out
    assert any(line.startswith(f"{future[:12]} time: ") for line in lines)
    assert len(lines) == 5 and CANARY not in out + err
    assert "audit --server-checks: 5 problem(s)" in err
    assert checks()[:2] == (code, out)  # a re-run still names them all
    code, out, _ = checks("--json", "--full")
    assert code == 6
    assert '"ok": false' in out and "refs/tags/v1" in out

    since = programme.cli("-C", str(mirror), "audit", "--server-checks", "--since", "HEAD~1")
    assert since.exit_code == 2 and "no --since" in since.stderr
    # in a work clone, refs of its own (remote-tracking, stash) are no evidence
    done = programme.cli("audit", "--server-checks", as_=None)
    assert done.exit_code == 2
    assert "git clone --mirror URL central.git" in done.stderr
