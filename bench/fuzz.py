"""Run the property tests of tests/hostile/test_fuzz.py for a long time.

Usage: .venv/bin/python bench/fuzz.py [--minutes 10] [--examples 2000]
Runs the properties again and again with fresh random seeds (one pytest process at a
time, one core) until the time is up, and prints the runs, the examples tried and any
failure. A failure prints hypothesis's minimal example and stops.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = "tests/hostile/test_fuzz.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--examples", type=int, default=2000, help="examples per property and run")
    args = parser.parse_args()
    env = {**os.environ, "CMGIT_FUZZ_EXAMPLES": str(args.examples)}
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-x",
        "-k",
        "not sample_documents and not size_limits",
        TARGET,
    ]
    listing = subprocess.run(
        [*argv, "--collect-only", "-q"], cwd=ROOT, env=env, capture_output=True, text=True
    ).stdout
    properties = sum(
        int(line.rsplit(": ", 1)[1])
        for line in listing.splitlines()
        if line.startswith(TARGET + ": ")
    )
    start = time.monotonic()
    runs = 0
    while time.monotonic() - start < args.minutes * 60:
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
        runs += 1
        if proc.returncode != 0:
            print(proc.stdout[-6000:], proc.stderr[-2000:], sep="\n")
            print(f"FAILED in run {runs}")
            return 1
        elapsed = time.monotonic() - start
        print(
            f"run {runs}: {properties} properties x {args.examples} examples, "
            f"{elapsed:.0f} s so far",
            flush=True,
        )
    elapsed = time.monotonic() - start
    print(
        f"done: {runs} runs, about {runs * properties * args.examples} examples "
        f"in {elapsed:.0f} s, no failure"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
