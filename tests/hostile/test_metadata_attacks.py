"""Hostile: an insider with a valid signing key puts into a commit's metadata what no one
may read, or hides a commit from plain git, or dates things where they never happened.
Each commit is crafted with plain git and signed with `ssh-keygen -Y sign`, so only the
metadata is wrong; audit must name the rule without echoing what the metadata carries.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

from cmgit import ids
from cmgit.audit import Auditor
from cmgit.history import Git

from ..conftest import Programme
from ..test_audit import forge
from ..test_signing import require_signatures

Headers = list[tuple[str, str]]


def git_bytes(root: Path, *args: str, input: bytes | None = None) -> bytes:
    """Plain git, as an attacker runs it: replace refs and grafts honoured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(
        ["git", "-C", str(root), *args], input=input, capture_output=True, check=True, env=env
    ).stdout


def ssh_sign(key: Path, payload: bytes) -> str:
    """The armored SSH signature `ssh-keygen` makes of ``payload`` (namespace git)."""
    return subprocess.run(
        ["ssh-keygen", "-q", "-Y", "sign", "-n", "git", "-f", str(key)],
        input=payload,
        capture_output=True,
        check=True,
    ).stdout.decode("ascii")


def craft(
    root: Path,
    headers: Headers,
    message: str,
    key: Path | None,
    tamper: Callable[[str], str] = lambda armored: armored,
) -> str:
    """A commit object of exactly these headers and message, signed as git signs (the
    signature covers everything else, and goes last among the headers)."""
    lines = "".join(f"{name} {value}\n" for name, value in headers)
    signature = ""
    if key is not None:
        armored = tamper(ssh_sign(key, f"{lines}\n{message}".encode()).rstrip("\n"))
        signature = "gpgsig " + armored.replace("\n", "\n ") + "\n"
    payload = f"{lines}{signature}\n{message}".encode()
    return (
        git_bytes(root, "hash-object", "-t", "commit", "-w", "--stdin", input=payload)
        .decode()
        .strip()
    )


def head_parts(root: Path) -> tuple[Headers, str]:
    """HEAD's header lines (without its signature) and message."""
    raw = git_bytes(root, "cat-file", "commit", "HEAD").decode()
    head, _, message = raw.partition("\n\n")
    headers: Headers = []
    for line in head.split("\n"):
        if line.startswith(" "):
            continue  # the signature's continuation lines
        name, _, value = line.partition(" ")
        if name != "gpgsig":
            headers.append((name, value))
    return headers, message


def resign_head(
    programme: Programme,
    key: Path,
    edit: Callable[[Headers], Headers] = lambda h: h,
    message: Callable[[str], str] = lambda m: m,
) -> str:
    """Replace HEAD with a copy whose metadata ``edit`` changed, signed with ``key``."""
    headers, text = head_parts(programme.root)
    commit = craft(programme.root, edit(headers), message(text), key)
    git_bytes(programme.root, "update-ref", "refs/heads/main", commit)
    git_bytes(programme.root, "reset", "-q", "--hard", commit)
    return commit


def audit(programme: Programme, root: Path | None = None) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    args = ["-C", str(root)] if root else []
    result = programme.cli(*args, "audit", "--json", "--full", as_=None)
    return result.exit_code, json.loads(result.stdout), result.output


def found(report: dict) -> set[tuple[str, str]]:  # type: ignore[type-arg]
    return {(v["commit"], v["rule"]) for v in report["violations"]}


def tree_with(root: Path, base: str, files: dict[str, bytes], index: Path) -> str:
    """The tree of commit ``base`` with ``files`` written in, made with plain git."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_INDEX_FILE"] = str(index)

    def run(*args: str, input: bytes | None = None) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], input=input, env=env, capture_output=True, check=True
        ).stdout.decode()

    run("read-tree", base)
    for path, data in files.items():
        blob = run("hash-object", "-w", "--stdin", input=data).strip()
        run("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}")
    return run("write-tree").strip()


def signed_note(programme: Programme, cw_key: Path) -> str:
    """A case with a note, both made by cmgit and signed by the caseworker's own key."""
    env = {"CMGIT_SIGNING_KEY": str(cw_key)}
    made = programme.cli("new", "--from", programme.form_file("identification"), env=env)
    assert made.exit_code == 0, made.output
    case_id = made.stdout.strip()
    noted = programme.cli("record", case_id, "note", "--from", programme.form_file("note"), env=env)
    assert noted.exit_code == 0, noted.output
    return case_id


def with_person(field: str, person: Callable[[str], str]) -> Callable[[Headers], Headers]:
    return lambda headers: [(n, person(v) if n == field else v) for n, v in headers]


PERSONAL_EMAIL = "amina.yusuf.age14.CANARY@example.org"


def personal(headers: Headers) -> Headers:
    """Author and committer with a child's name for an e-mail address."""
    return [
        (n, v.replace("cw-north-1@cmgit.invalid", PERSONAL_EMAIL))
        if n in ("author", "committer")
        else (n, v)
        for n, v in headers
    ]


def test_an_author_email_naming_a_child(programme: Programme, tmp_path: Path) -> None:
    _, cw_key = require_signatures(programme, tmp_path)
    signed_note(programme, cw_key)
    code, clean, _ = audit(programme)
    assert code == 0, clean
    bad = resign_head(programme, cw_key, personal)
    code, report, output = audit(programme)
    assert code == 6
    assert found(report) == {(bad, "headers")}
    assert "author e-mail is not cmgit's form" in output
    assert "CANARY" not in output and "amina" not in output


def test_extra_header_lines(programme: Programme, tmp_path: Path) -> None:
    """An extra line carrying a name, an encoding, a merge tag: each one a violation."""
    _, cw_key = require_signatures(programme, tmp_path)
    signed_note(programme, cw_key)
    good = programme.git("rev-parse", "HEAD").strip()
    extras = (
        ("x-child", "Amina Yusuf CANARY-NAME"),
        ("encoding", "ISO-8859-1"),
        ("mergetag", "object " + good + "\n type commit\n tag CANARY-TAG\n tagger x"),
    )
    for name, value in extras:
        bad = resign_head(programme, cw_key, lambda h, n=name, v=value: [*h, (n, v)])
        code, report, output = audit(programme)
        assert code == 6 and found(report) == {(bad, "headers")}, name
        assert "header lines cmgit never writes" in output
        assert "CANARY" not in output and "Amina" not in output
        git_bytes(programme.root, "reset", "-q", "--hard", good)


def test_a_committer_other_than_the_author(programme: Programme, tmp_path: Path) -> None:
    _, cw_key = require_signatures(programme, tmp_path)
    signed_note(programme, cw_key)

    def later(value: str) -> str:
        who, _, when = value.rpartition("> ")
        return f"{who}> {int(when.split()[0]) + 60} +0000"

    bad = resign_head(programme, cw_key, with_person("committer", later))
    code, report, output = audit(programme)
    assert code == 6 and (bad, "headers") in found(report)
    assert "committer or commit time differs from the author's" in output


def test_a_message_naming_a_form_cmgit_never_wrote(programme: Programme, tmp_path: Path) -> None:
    _, cw_key = require_signatures(programme, tmp_path)
    signed_note(programme, cw_key)
    bad = resign_head(programme, cw_key, message=lambda m: m.rstrip("\n") + "\nCmgit-Format: 9\n")
    code, report, output = audit(programme)
    assert code == 6 and found(report) == {(bad, "message")}
    assert "a form cmgit never wrote" in output


def _with_reserved(armored: str) -> str:
    """The same valid signature with a name in its reserved field, which neither
    `ssh-keygen -Y verify` nor the signed data covers."""
    lines = armored.splitlines()
    blob = base64.b64decode("".join(lines[1:-1]))
    fields, pos = [], 10
    while pos < len(blob):
        (size,) = struct.unpack(">I", blob[pos : pos + 4])
        fields.append(blob[pos + 4 : pos + 4 + size])
        pos += 4 + size
    fields[2] = b"Amina Yusuf CANARY-NAME"
    blob = blob[:10] + b"".join(struct.pack(">I", len(f)) + f for f in fields)
    text = base64.b64encode(blob).decode()
    return "\n".join([lines[0], *(text[i : i + 70] for i in range(0, len(text), 70)), lines[-1]])


def _rewrapped(armored: str) -> str:
    lines = armored.splitlines()
    text = "".join(lines[1:-1])
    return "\n".join([lines[0], *(text[i : i + 64] for i in range(0, len(text), 64)), lines[-1]])


def test_a_signature_carrying_more_than_a_signature(programme: Programme, tmp_path: Path) -> None:
    _, cw_key = require_signatures(programme, tmp_path)
    signed_note(programme, cw_key)
    good = programme.git("rev-parse", "HEAD").strip()
    headers, message = head_parts(programme.root)
    for tamper, detail in (
        (_with_reserved, "signature carries data a signature never has"),
        (_rewrapped, "signature text is not in the form ssh-keygen writes"),
    ):
        bad = craft(programme.root, headers, message, cw_key, tamper)
        git_bytes(programme.root, "reset", "-q", "--hard", bad)
        code, report, output = audit(programme)
        assert code == 6 and found(report) == {(bad, "signature")}, report
        assert detail in output and "CANARY" not in output
        git_bytes(programme.root, "reset", "-q", "--hard", good)


def test_a_message_hiding_text_after_a_nul(programme: Programme, tmp_path: Path) -> None:
    """git shows a message only up to a NUL byte, and `git hash-object` accepts one."""
    _, cw_key = require_signatures(programme, tmp_path)
    signed_note(programme, cw_key)
    bad = resign_head(programme, cw_key, message=lambda m: m + "\0Amina Yusuf CANARY-NAME\n")
    shown = git_bytes(programme.root, "log", "-1", "--format=%B", bad)
    assert b"CANARY" not in shown  # what plain git shows, and audit read before
    code, report, output = audit(programme)
    assert code == 6 and found(report) == {(bad, "message")}
    assert "CANARY" not in output


def test_replace_ref_hiding_a_bad_commit(programme: Programme, tmp_path: Path) -> None:
    """Issue #14 attack 1: a plaintext record committed with plain git, hidden behind a
    replace ref to a good commit. An auditor's clone that fetched refs/replace/* shows
    the good commit to plain git; audit still judges the bad one, and names the ref."""
    case_id = programme.new_case()
    good = programme.git("rev-parse", "HEAD").strip()
    parent = programme.git("rev-parse", "HEAD~1").strip()
    plain = b"case_id: x\nname: Amina Yusuf CANARY-NAME\n"
    tree = tree_with(programme.root, parent, {ids.record_path(case_id): plain}, tmp_path / "i")
    headers, message = head_parts(programme.root)
    bad = craft(programme.root, [("tree", tree), *headers[1:]], message, None)
    git_bytes(programme.root, "update-ref", "refs/heads/main", bad)
    git_bytes(programme.root, "reset", "-q", "--hard", bad)
    git_bytes(programme.root, "replace", bad, good)
    # Plain git now shows the good commit's content under the bad commit's id.
    assert git_bytes(programme.root, "rev-parse", f"{bad}^{{tree}}").decode().strip() != tree

    auditor = tmp_path / "auditor"
    git_bytes(tmp_path, "clone", "-q", str(programme.root), str(auditor))
    git_bytes(auditor, "fetch", "-q", "origin", "refs/replace/*:refs/replace/*")
    assert git_bytes(auditor, "cat-file", "-p", f"{bad}:{ids.record_path(case_id)}") != plain
    code, report, output = audit(programme, auditor)
    assert code == 6
    assert {(bad, "record"), (bad, "indirection")} <= found(report)
    assert f"refs/replace/{bad}" in output
    assert "CANARY" not in output and "Amina" not in output

    mirror = tmp_path / "mirror.git"
    git_bytes(tmp_path, "clone", "-q", "--mirror", str(programme.root), str(mirror))
    mirrored = Auditor(Git(mirror)).run()
    assert {(bad, "record"), (bad, "indirection")} <= {
        (v.commit, v.rule) for v in mirrored.violations
    }


def test_grafts_hiding_a_commit(programme: Programme, tmp_path: Path) -> None:
    """info/grafts makes git skip a commit; cmgit's git calls never read it."""
    _, cw_key = require_signatures(programme, tmp_path)
    case_id = signed_note(programme, cw_key)
    before = programme.git("rev-parse", "HEAD~1").strip()
    bad = resign_head(programme, cw_key, personal)
    env = {"CMGIT_SIGNING_KEY": str(cw_key)}
    again = programme.cli("record", case_id, "note", "--from", programme.form_file("note"), env=env)
    assert again.exit_code == 0, again.output
    after = programme.git("rev-parse", "HEAD").strip()
    (programme.root / ".git" / "info" / "grafts").write_text(f"{after} {before}\n")
    assert bad not in programme.git("rev-list", "HEAD")  # plain git no longer sees it
    assert bad in Git(programme.root).text("rev-list", "HEAD")
    code, report, output = audit(programme)
    assert code == 6
    assert {(bad, "headers")} <= found(report)
    assert "info/grafts gives commits other parents in git; audit ignored it" in output
    assert "CANARY" not in output


def test_notes_dated_before_identification_or_after_the_commit(programme: Programme) -> None:
    """Issue #14: notes dated 2019 and 2031 on a case identified in 2026."""
    case_id = programme.new_case()
    for day in ("2019-06-01", "2031-06-01"):
        noted = programme.cli(
            "record", case_id, "note", "--from", programme.form_file("note"), today=day
        )
        assert noted.exit_code == 0, noted.output
    early, late = programme.git("rev-list", "-2", "HEAD").split()[::-1]
    code, report, _ = audit(programme)
    assert code == 6
    details = {v["commit"]: v["detail"] for v in report["violations"]}
    assert found(report) == {(early, "time"), (late, "time")}
    assert details[early] == f"{case_id}: Cmgit-Date is before the case was identified"
    assert details[late] == f"{case_id}: Cmgit-Date is after the commit was made"


def test_committer_time_going_back(programme: Programme, tmp_path: Path) -> None:
    _, cw_key = require_signatures(programme, tmp_path)
    signed_note(programme, cw_key)

    def back(days: float) -> Callable[[Headers], Headers]:
        def edit(value: str) -> str:
            who, _, when = value.rpartition("> ")
            return f"{who}> {int(when.split()[0]) - int(days * 86400)} +0000"

        return lambda h: with_person("committer", edit)(with_person("author", edit)(h))

    good = programme.git("rev-parse", "HEAD").strip()
    skewed = resign_head(programme, cw_key, back(0.5))  # a clock half a day slow: fine
    code, report, _ = audit(programme)
    assert code == 0, report
    git_bytes(programme.root, "reset", "-q", "--hard", good)
    bad = resign_head(programme, cw_key, back(3))
    code, report, output = audit(programme)
    assert code == 6 and found(report) == {(bad, "time")}
    assert "committed more than a day before its parent commit" in output
    assert skewed != bad


def test_state_since_going_back(programme: Programme) -> None:
    case_id = programme.walk("assessment")
    path = ids.record_path(case_id)
    data = (programme.root / path).read_text()
    version = int(data.split("version: ", 1)[1].split("\n", 1)[0])
    since = next(line for line in data.splitlines() if line.startswith("state_since: "))
    forged = data.replace(
        since, re.sub(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", "2020-01-01", since)
    ).replace(f"version: {version}\n", f"version: {version + 1}\n")
    bad = forge(
        programme,
        {path: forged.encode()},
        f"{case_id}: record note",
        [
            ("Cmgit-Case", case_id),
            ("Cmgit-Action", "record"),
            ("Cmgit-Form", "note"),
            ("Cmgit-Version", str(version + 1)),
            ("Cmgit-Date", "2026-04-01"),
            ("Cmgit-Actor", "cw-north-1"),
            ("Cmgit-Role", "caseworker"),
        ],
        "cw-north-1",
    )
    code, report, output = audit(programme)
    assert code == 6 and found(report) == {(bad, "time")}
    assert f"{case_id}: state_since went back" in output


def test_compromised_signing_key(programme: Programme, tmp_path: Path) -> None:
    """Commits signed with a key the registry marks compromised, on or after the day,
    are violations, also those made before the mark was recorded."""
    pm_key, cw_key = require_signatures(programme, tmp_path)
    signed_note(programme, cw_key)
    made = programme.git("rev-list", "-2", "HEAD").split()
    pm = {"CMGIT_SIGNING_KEY": str(pm_key)}
    utc_today = dt.datetime.now(dt.UTC).date()
    for day, flagged in ((utc_today + dt.timedelta(days=1), set()), (utc_today, set(made))):
        git_bytes(programme.root, "reset", "-q", "--hard", made[0])
        marked = programme.cli(
            "staff", "update", "cw-north-1", "--key-compromised-on", day.isoformat(),
            as_="pm-001", env=pm,
        )  # fmt: skip
        assert marked.exit_code == 0, marked.output
        assert "run cmgit audit --full to find the commits it signed since" in marked.output
        assert "compromised_keys" in (programme.root / "staff.yaml").read_text()
        code, report, output = audit(programme)
        assert found(report) == {(oid, "compromised-key") for oid in flagged}
        assert code == (6 if flagged else 0)
    assert f"signed with a key marked compromised from {utc_today.isoformat()}" in output


def test_marking_a_key_compromised_needs_one(programme: Programme) -> None:
    before = programme.state()
    result = programme.cli(
        "staff", "update", "cw-north-1", "--key-compromised-on", "2026-03-01", as_="pm-001"
    )
    assert result.exit_code == 2
    assert "cw-north-1 has no signing key to mark compromised" in result.output
    assert programme.state() == before
    bad_day = programme.cli(
        "staff", "update", "cw-north-1", "--key-compromised-on", "someday", as_="pm-001"
    )
    assert bad_day.exit_code == 2 and "--key-compromised-on must be a date" in bad_day.output


def push(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(root), "push", "-q", "origin", "HEAD:main"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    )


def test_the_central_repository_refuses_them(programme: Programme, tmp_path: Path) -> None:
    """Pushed to a bare central repository with cmgit's server hook, each attack is
    refused with its rule, and the central repository keeps the history it had."""
    _, cw_key = require_signatures(programme, tmp_path)
    case_id = signed_note(programme, cw_key)
    good = programme.git("rev-parse", "HEAD").strip()  # the note: not yet pushed
    central = programme.git("rev-parse", "HEAD~1").strip()
    server = tmp_path / "central.git"
    git_bytes(tmp_path, "clone", "-q", "--bare", str(programme.root), str(server))
    git_bytes(server, "update-ref", "refs/heads/main", central)
    installed = programme.cli("-C", str(server), "hooks", "install", "--server", as_=None)
    assert installed.exit_code == 0, installed.output
    programme.git("remote", "add", "origin", str(server))

    def dated_2031() -> None:
        env = {"CMGIT_SIGNING_KEY": str(cw_key)}
        note = programme.form_file("note")
        made = programme.cli("record", case_id, "note", "--from", note, env=env, today="2031-06-01")
        assert made.exit_code == 0, made.output

    # A NUL in a commit is refused by git's own object check (receive.fsckObjects) before
    # the hook runs: refused all the same, in git's words, so no rule of cmgit's to read.
    attacks: list[tuple[Callable[[], object], str]] = [
        (lambda: resign_head(programme, cw_key, personal), "headers: author e-mail"),
        (lambda: resign_head(programme, cw_key, lambda h: [*h, ("x-child", "CANARY")]), "headers"),
        (lambda: resign_head(programme, cw_key, message=lambda m: m + "\0CANARY\n"), ""),
        (dated_2031, "time: " + case_id),
    ]
    for attack, rule in attacks:
        attack()
        assert programme.git("rev-parse", "HEAD").strip() != good
        pushed = push(programme.root)
        assert pushed.returncode != 0 and rule in pushed.stderr, (rule, pushed.stderr)
        assert "CANARY" not in pushed.stderr and "amina" not in pushed.stderr
        assert git_bytes(server, "rev-parse", "main").decode().strip() == central
        git_bytes(programme.root, "reset", "-q", "--hard", good)
    accepted = push(programme.root)
    assert accepted.returncode == 0, accepted.stderr
    assert git_bytes(server, "rev-parse", "main").decode().strip() == good
