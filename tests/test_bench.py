"""The benchmark generator and scripts run end to end on a small programme, so they
cannot rot between the full runs `make bench` makes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent / "bench"


def run_bench(tmp_path: Path, formats: str) -> tuple[str, str]:
    """bench/run.py at 100 cases for ``formats``: what it printed, and its report."""
    env = {**os.environ, "CMGIT_BENCH_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "run.py"),
            "100",
            "--runs",
            "1",
            "--out",
            str(out),
            "--formats",
            formats,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "PASS" in done.stdout or "FAIL" in done.stdout
    return done.stdout, out.read_text()


def test_generator_and_benchmarks_run_at_100_cases(tmp_path: Path) -> None:
    printed, report = run_bench(tmp_path, "1")
    for target in (
        "cmgit --help",
        "cmgit list (repeated)",
        "cmgit stats (first run)",
        "cmgit validate (throughput)",
        "cmgit audit (per commit)",
        "cmgit move",
        "GC check of a commit (caseload)",
        "cmgit log ID",
        "migration of every record",
        "cmgit import (100 rows)",
        "cmgit site build",
        "peak memory",
    ):
        assert target in printed and target in report
    assert "## 100 cases" in report
    # The generated programme is a real one: every record valid, the history audited.
    assert_generated(tmp_path, layout=1)


# A second programme generated and measured: kept out of the default run for the suite's
# time, run with `-m slow` and by every `make bench`.
@pytest.mark.slow
def test_the_format_2_benchmarks_run_at_100_cases(tmp_path: Path) -> None:
    printed, report = run_bench(tmp_path, "2")
    for target in (
        "growth per commit (format 2)",
        "auditor clone: sealed entries fetched",
        "auditor clone: size",
        "deactivation (25 closed cases)",
        "purge of one case",
        "purge: wrapped key left",
        "purge: record packs rewritten",
        "first write after a clone",
    ):
        assert target in printed and target in report
    assert "## 100 cases, record format 2" in report
    programme = assert_generated(tmp_path, layout=2)
    # In format 2 every version that changed forms wrote one sealed entry.
    assert list((programme / "cases" / "sealed").rglob("*.age"))


def assert_generated(tmp_path: Path, *, layout: int) -> Path:
    """The bench's cache holds one finished programme of 100 cases in ``layout``: its
    folder."""
    (programme,) = (tmp_path / "cache").glob(f"programme-100-layout{layout}-*")
    assert (programme / "ready").exists()
    assert len(list((programme / "cases" / "records").rglob("*.yaml"))) == 100
    return programme
