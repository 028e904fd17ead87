"""Concurrency (hostile P5): many real cmgit processes on one clone serialise on the
repository lock; each succeeds or, after a bounded wait, reports the repository busy."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time

import pytest

from ..conftest import Programme
from .faults_support import assert_consistent, assert_refused, spawn

WRITERS = 20


@pytest.mark.parametrize("timeout", ["10", pytest.param("0.2", marks=pytest.mark.slow)])
def test_P5_twenty_processes_change_twenty_cases_at_once(
    programme: Programme, timeout: str
) -> None:
    """P5: all serialise on the lock (or report busy after waiting); no corruption; fsck
    clean; every change that succeeded is in history; audit passes. A short lock timeout
    makes some of them give up: those change nothing."""
    cases = [programme.new_case() for _ in range(WRITERS)]
    start = programme.git("rev-parse", "HEAD").strip()
    form = programme.form_file("note")
    procs = {
        case_id: spawn(
            programme,
            "record",
            case_id,
            "note",
            "--from",
            form,
            env={"CMGIT_LOCK_TIMEOUT": timeout},
        )
        for case_id in cases
    }
    results = {
        case_id: (proc.wait(timeout=300), proc.communicate()) for case_id, proc in procs.items()
    }
    done = [c for c, (code, _) in results.items() if code == 0]
    for code, (_, err) in results.values():
        if code != 0:  # only ever "busy", after the bounded wait, as one line
            assert code == 6 and "repository is busy" in err and len(err.splitlines()) == 1, err
    assert done, results
    history = programme.git("log", "--format=%H", f"{start}..HEAD").split()
    assert len(history) == len(done)
    assert programme.git("rev-list", "--merges", "HEAD") == ""
    changed = {
        line.split(": ")[1]
        for line in programme.git(
            "log", "--format=%(trailers:key=Cmgit-Case)", f"{start}..HEAD"
        ).split("\n")
        if line
    }
    assert changed == set(done)
    for case_id in cases:
        shown = programme.cli("show", case_id, "--json")
        assert shown.exit_code == 0, shown.output
        doc = json.loads(shown.stdout)
        assert doc["version"] == (2 if case_id in done else 1)
        assert bool(doc.get("note")) is (case_id in done)
    assert_consistent(programme)
    assert programme.cli("audit", as_=None).exit_code == 0


def test_P5_busy_wait_is_bounded_and_changes_nothing(programme: Programme) -> None:
    """P5/G2: while another cmgit holds the repository lock, a writer waits at most
    CMGIT_LOCK_TIMEOUT, then exits 6 "repository busy", one line, nothing changed."""
    case_id = programme.new_case()
    before = programme.state()
    lock = programme.root / ".git" / "cmgit" / "lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        started = time.monotonic()
        proc = spawn(
            programme,
            "record",
            case_id,
            "note",
            "--from",
            programme.form_file("note"),
            env={"CMGIT_LOCK_TIMEOUT": "1"},
        )
        out, err = proc.communicate(timeout=60)
        waited = time.monotonic() - started
    finally:
        os.close(fd)
    assert 1 <= waited < 30
    assert_refused(
        subprocess.CompletedProcess(proc.args, proc.returncode, out, err),
        6,
        programme,
        before,
        "repository is busy",
        "another cmgit command",
    )
