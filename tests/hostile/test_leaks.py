"""Hostile tests 6.4, leak checks (L1-L9): no canary anywhere it must not be.

The fixtures carry canary strings (CANARY-...) in every personal field; these tests run
real commands on a real repository and then look for the canary in the repository's
objects, names and messages, on disk (TMPDIR, /dev/shm, the work tree, .git,
__pycache__), in the site, the statistics and in every failing command's output.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cmgit import crypto, editing, entries, ids

from ..conftest import CANARY, Programme, form
from ..test_site_build import ALLOWED, build, commit_pages, files, text_of
from .refusal import (
    SEEN_OUTPUT,
    git_objects,
    no_canary_on_disk,
    one_line_error,
    shm_entries,
    snapshot,
)
from .sealed_files import entry_versions, header_end


def scenario(programme: Programme, tmp_path: Path) -> list[str]:
    """Cases walked through the workflow, forms recorded, an edit through $EDITOR."""
    cases = [programme.walk("implementation"), programme.new_case(as_="cw-north-2")]
    for name in ("consent", "follow_up", "note"):
        assert (
            programme.cli("record", cases[0], name, "--from", programme.form_file(name)).exit_code
            == 0
        ), name
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/urgent_needs: true/urgent_needs: false/' \"$1\"\n")
    editor.chmod(0o755)
    assert (
        programme.cli("edit", cases[1], as_="cw-north-2", env={"EDITOR": str(editor)}).exit_code
        == 0
    )
    return cases


def blobs(programme: Programme, pathspec: str) -> dict[str, str]:
    """Every blob ever committed at PATHSPEC (any commit, any ref, the keyring's shards
    too): oid -> path."""
    out = programme.git("log", "--all", "--raw", "--no-abbrev", "--format=", "--", pathspec)
    found = {}
    for line in out.splitlines():
        meta, _, path = line.partition("\t")
        new = meta.split()[3]
        if set(new) != {"0"} and not path.endswith("/.gitkeep"):
            found[new] = path
    return found


def blob(programme: Programme, oid: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(programme.root), "cat-file", "blob", oid],
        capture_output=True,
        check=True,
    ).stdout


def x25519_only(data: bytes) -> None:
    header = crypto.inspect_binary(data)
    assert set(header.stanza_types) == {"X25519"} and header.grease_stanzas <= 1


def test_L1_every_record_blob_is_sealed_x25519_only(programme: Programme, tmp_path: Path) -> None:
    """L1: every blob of every commit under records/ is an open file of SPEC section 9
    (open fields only); every sealed entry under sealed/ and every wrapped key of the
    keyring is a binary age file with X25519 stanzas only; the canary is in no blob at
    all."""
    cases = scenario(programme, tmp_path)
    order = programme.repo().schemas.open_fields
    opened = blobs(programme, ids.RECORDS_DIR)
    assert len(opened) > 10
    for oid, path in opened.items():
        open_fields = entries.parse_open_file(blob(programme, oid), order)
        assert ids.record_path(open_fields["case_id"]) == path
    assert {ids.case_id_from_path(p) for p in opened.values()} == set(cases)
    sealed = blobs(programme, entries.SEALED_DIR)
    assert len(sealed) > 10
    for oid, path in sealed.items():
        named = entries.parse_entry_path(path)
        assert named is not None and named[0] in cases, path
        x25519_only(blob(programme, oid))
    wrapped = {
        oid: path
        for oid, path in blobs(programme, "*.age").items()
        if not path.startswith(f"{entries.SEALED_DIR}/")
    }
    assert {path.split("/")[0] for path in wrapped.values()} == set(cases)
    for oid, path in wrapped.items():
        assert path.split("/")[1] == "staff.age" or path.split("/")[1].startswith("recovery.")
        x25519_only(blob(programme, oid))
    kinds = set()
    for kind, data in git_objects(programme.root):
        kinds.add(kind)
        assert CANARY.encode() not in data, kind
    assert {"blob", "tree", "commit"} <= kinds


def test_L2_no_canary_on_disk_after_commands(programme: Programme, tmp_path: Path) -> None:
    """L2: after each command, no canary in $TMPDIR, /dev/shm, the work tree, .git,
    editor leftovers or __pycache__."""
    shm = shm_entries()
    scenario(programme, tmp_path)
    for args, who in (
        (["validate"], "cw-north-1"),
        (["find", "canary"], "sv-north"),
        (["show", programme.new_case()], "cw-south-1"),
        (["recover"], None),
        (["log", programme.new_case()], None),
    ):
        programme.cli(*args, as_=who)
        no_canary_on_disk(programme, shm_before=shm)
    assert not any(Path(os.environ["TMPDIR"]).iterdir())


def test_L2_sigkill_during_edit_leaves_only_tmpfs_residue_that_recover_removes(
    programme: Programme, tmp_path: Path
) -> None:
    """L2: after SIGKILL mid-edit, tmpfs residue only (the private edit file and the
    editor's swap file), removed by `recover`; nothing elsewhere."""
    case_id = programme.new_case()
    seen = tmp_path / "seen.txt"
    editor = tmp_path / "editor.py"
    editor.write_text(
        "import sys, time, pathlib\n"
        "p = pathlib.Path(sys.argv[1])\n"
        "swap = p.with_name('.' + p.name + '.swp')\n"
        "swap.write_text(p.read_text())  # what vim keeps beside the file\n"
        f"open({str(seen)!r}, 'w').write(str(p))\n"
        "time.sleep(60)\n"
    )
    cmgit = Path(sys.executable).parent / "cmgit"
    env = {
        **os.environ,
        "CMGIT_IDENTITY": str(programme.key("cw-north-1")),
        "CMGIT_TODAY": "2026-04-01",
        "EDITOR": f"{sys.executable} {editor}",
    }
    shm = shm_entries()
    before = snapshot(programme)
    proc = subprocess.Popen(
        [str(cmgit), "-C", str(programme.root), "edit", case_id],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (seen.exists() and seen.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        private = Path(seen.read_text())
        # a second session's files are not touched by recover while it runs
        assert programme.cli("recover", as_=None).exit_code == 0
        assert private.exists()
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    swap = private.with_name(f".{private.name}.swp")
    assert private.exists() and swap.exists()  # the residue SIGKILL can leave
    assert CANARY.encode() in private.read_bytes()
    assert private.parent == editing.private_folder()
    assert snapshot(programme).state == before.state
    result = programme.cli("recover", as_=None)
    assert result.exit_code == 0, result.output
    assert not private.exists() and not swap.exists()
    assert "removed an edit file" in result.stdout
    no_canary_on_disk(programme, shm_before=shm)


def test_L3_metadata_carries_no_personal_data(programme: Programme, tmp_path: Path) -> None:
    """L3: author, committer, subject, body, file names, branch and tag names: no canary;
    case IDs opaque."""
    cases = scenario(programme, tmp_path)
    meta = programme.git("log", "--all", "--format=%an%x00%ae%x00%cn%x00%ce%x00%s%x00%b")
    names = programme.git("ls-tree", "-r", "--name-only", "HEAD")
    refs = programme.git("for-each-ref", "--format=%(refname)")
    for text in (meta, names, refs):
        assert CANARY not in text and CANARY.lower() not in text.lower()
    for case_id in cases:
        assert ids.CASE_ID_RE.fullmatch(case_id)
    for line in names.splitlines():
        assert line.isascii() and (
            ids.case_id_from_path(line)
            or not line.startswith(f"{ids.RECORDS_DIR}/")
            or line.endswith(".gitkeep")
        ), line
    # free text never reaches a message: every message is in the generated form
    result = programme.cli("audit", "--json", as_=None)
    assert result.exit_code == 0, result.output


def test_L4_narrative_length_is_hidden_by_buckets(programme: Programme) -> None:
    """L4: sealed entries with narratives of different lengths in the same bucket:
    identical ciphertext length. (Entries are padded to buckets of 1, 1.5, 2, 3, 4 KiB
    ...: 10 and 100 bytes share the first here, 2,500 and 3,000 bytes the 4 KiB one.)"""
    lengths = {}
    for size in (10, 100, 2500, 3000):
        doc = form("identification")
        doc["identification"]["initial_concern_summary"] = ("CANARY " + "x" * size)[:size]
        case_id = programme.cli("new", "--from", programme.form_file("f", doc)).stdout.strip()
        [version] = entry_versions(programme, case_id)
        binary = (programme.root / entries.entry_path(case_id, version)).read_bytes()
        # The header differs only by the random filler stanza age adds to every
        # message; what follows it (nonce and payload) is what the narrative could show.
        lengths[size] = len(binary) - header_end(binary)
    assert lengths[10] == lengths[100] and lengths[2500] == lengths[3000], lengths
    assert lengths[10] < lengths[3000]


def test_L5_site_build_publishes_no_canary(programme: Programme, tmp_path: Path) -> None:
    """L5: site build with canary-laden fixtures, and canary-laden stray files of types
    outside the allow-list committed beside the SOP pages: no canary in any published
    file, no file type outside the allow-list. (A committed stray file of an allowed
    type, say notes.txt, is published as written: the build cannot tell free text from
    SOP text. An uncommitted one is never read: tests/hostile/test_site_source.py.)"""
    scenario(programme, tmp_path)
    sop = programme.root / "site" / "sop"
    (sop / "draft.yaml").write_text("name: CANARY-NAME-7f3a\n")
    (sop / "export.csv").write_text("CANARY-NAME-7f3a,2014-01-01\n")
    (sop / ".env").write_text("NAME=CANARY-NAME-7f3a\n")
    commit_pages(programme, "strays")
    out = tmp_path / "public"
    code, stdout, stderr = build(programme, out)
    assert CANARY not in stdout + stderr
    published = files(out) if out.exists() else []
    for path in published:
        rel = path.relative_to(out).as_posix()
        assert rel.rsplit(".", 1)[-1] in ALLOWED, rel
        assert "canary" not in text_of(path).lower(), rel
    assert code == 0 or not published, (code, stdout, stderr)


def cells(table: dict[str, Any]) -> list[Any]:
    out: list[Any] = []

    def walk(value: Any) -> None:
        if isinstance(value, list):
            for item in value:
                walk(item)
        else:
            out.append(value)

    walk(table["cells"])
    return out


def test_L6_small_cells_suppressed_end_to_end(programme: Programme) -> None:
    """L6: every published count 1..threshold-1 is suppressed (tests/test_stats.py solves
    the linear system; here the command's own output is checked)."""
    for _ in range(3):
        programme.new_case()
    programme.new_case(as_="cw-south-1")
    result = programme.cli("stats", "--json", as_=None)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    threshold = doc["suppression_threshold"]
    seen = 0
    for table in doc["tables"]:
        for value in cells(table):
            if isinstance(value, int) and not isinstance(value, bool):
                seen += 1
                assert value == 0 or value >= threshold, (table.get("title"), value)
    assert seen > 0


def test_L7_one_more_case_reveals_nothing(programme: Programme) -> None:
    """L7: statistics of month M and M+1 differing by one case in a small area: no
    published cell reveals the one case (tests/test_stats.py covers rounding and the
    documented limit)."""
    for _ in range(6):
        programme.new_case()
    first = json.loads(programme.cli("stats", "--json", as_=None).stdout)
    programme.new_case(as_="cw-south-1")
    second = json.loads(programme.cli("stats", "--json", as_=None).stdout)
    threshold = first["suppression_threshold"]
    for old, new in zip(first["tables"], second["tables"], strict=True):
        for a, b in zip(cells(old), cells(new), strict=True):
            if isinstance(a, int) and isinstance(b, int):
                assert abs(a - b) != 1 or min(a, b) >= threshold, (old.get("title"), a, b)
                assert not (0 < abs(a - b) < threshold and a == 0), (old.get("title"), a, b)


def test_L8_failing_commands_and_logs_carry_no_canary(
    programme: Programme, caplog: pytest.LogCaptureFixture
) -> None:
    """L8: logs, exceptions and CLI output of failing commands: no canary."""
    caplog.set_level(logging.DEBUG)
    case_id = programme.new_case()
    bad = programme.work / "bad.yaml"
    bad.write_text(
        "identification:\n  identified_on: CANARY-DATE\n  religion: CANARY-R\n"
        "  initial_concern_summary: [CANARY-LIST\n"
    )
    canary_dump = programme.work / "enum.yaml"
    doc = form("identification")
    doc["identification"]["identification_source"] = "CANARY-ENUM"
    canary_dump.write_text(json.dumps(doc))
    failures = [
        ("new", "--from", str(bad)),
        ("new", "--from", str(canary_dump)),
        ("record", case_id, "note", "--from", str(canary_dump)),
        ("show", "CANARY-NAME"),
        ("find", "CANARY"),
        ("move", case_id, "closed"),
        ("assign", case_id, "CANARY-staff", "--reason", "staff_departure"),
        ("settings", "set", "programme_name", "[CANARY"),
    ]
    for args in failures:
        for who in ("cw-north-1", "cw-south-1", "pm-001"):
            result = programme.cli(*args, as_=who)
            SEEN_OUTPUT.append(result.output)
            if result.exit_code != 0:
                one_line_error(result) if result.stderr.startswith("Error: ") else None
    assert SEEN_OUTPUT
    for output in SEEN_OUTPUT:
        assert CANARY not in output, output
    assert CANARY not in caplog.text


def test_L9_diff_decrypts_to_the_terminal_only(programme: Programme) -> None:
    """L9: `git log -p`/`git show` on records: a non-recipient sees only open fields and
    sealed text; a recipient's decrypted diff goes to the terminal only (textconv cache
    off, nothing written to disk or to git notes)."""
    case_id = programme.new_case()
    assert programme.cli("hooks", "install", as_=None).exit_code == 0
    assert (
        programme.cli("record", case_id, "note", "--from", programme.form_file("note")).exit_code
        == 0
    )
    config = programme.git("config", "--list", "--local")
    assert "cachetextconv=true" not in config.replace(" ", "")
    shm = shm_entries()
    base = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}

    def git_as(who: str, *args: str) -> str:
        env = {**base, "CMGIT_IDENTITY": str(programme.key(who))}
        return subprocess.run(
            ["git", "-C", str(programme.root), *args],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout

    for who, args in (
        ("cw-north-1", ("log", "-p", "-2")),
        ("cw-north-1", ("show", "HEAD")),
        ("cw-south-1", ("log", "-p", "-2")),
    ):
        shown = git_as(who, *args)
        if who == "cw-north-1":
            assert CANARY in shown, args
        else:
            assert CANARY not in shown and f"sealed entry 2 of {case_id}" in shown, args
    assert programme.git("for-each-ref", "refs/notes") == ""
    no_canary_on_disk(programme, shm_before=shm)
