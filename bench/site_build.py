"""Time the keyless statistics and the site build on a programme.

Usage: .venv/bin/python bench/site_build.py [REPO]
       .venv/bin/python bench/site_build.py --cases 300
With REPO, times an existing case repository; with --cases N, first builds a demo of N
cases in a temporary folder (about half a second a case). Prints, per step: reading the
open fields and history, computing the suppressed tables, writing the reference pages,
and the whole `cmgit site build` (MkDocs-Material included), each the best of 3 runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cmgit import demo, stats
from cmgit.audit import config_in_force
from cmgit.site.publish import build
from cmgit.site.reference import reference_pages
from cmgit.site.source import open_source

TODAY = dt.date(2026, 4, 1)


def best(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", nargs="?", type=Path)
    parser.add_argument("--cases", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cmgit-bench-") as tmp:
        repo = args.repo
        if repo is None:
            start = time.perf_counter()
            demo.build(Path(tmp) / "demo", cases=args.cases, seed=7, today=TODAY)
            repo = Path(tmp) / "demo" / "cases"
            print(f"demo of {args.cases} cases built in {time.perf_counter() - start:.1f} s")
        source = open_source(repo, in_force=config_in_force)
        cases = source.cases()
        changes = source.changes()
        print(f"{len(cases)} cases, {len(changes)} changes of state in history")
        read = best(
            3,
            lambda: (
                open_source(repo, in_force=config_in_force).cases(),
                open_source(repo, in_force=config_in_force).changes(),
            ),
        )
        compute = best(3, lambda: stats.compute(cases, changes, source.programme(), TODAY))
        pages = best(3, lambda: reference_pages(source))
        whole = best(
            3, lambda: build(repo, Path(tmp) / "out", today=TODAY, in_force=config_in_force)
        )
        for name, seconds in (
            ("read open fields and history", read),
            ("compute suppressed tables", compute),
            ("write reference pages", pages),
            ("cmgit site build (whole)", whole),
        ):
            print(f"{name:<32} {seconds * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
