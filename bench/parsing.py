"""The speed of cmgit's YAML reader on good and hostile input, beside PyYAML's own.

    python bench/parsing.py

The tests check what `yamlio.load` accepts and refuses; this measures how long it takes.
Each row is the median of a number of runs of cmgit's load, its limit, and the anchor:
PyYAML's C loader (the cheapest correct plain parse) on the same text, or, for input
PyYAML would expand or recurse into, on the first few kilobytes of it.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cmgit import yamlio
from cmgit.errors import ParseError

FORM = "".join(
    f"contact_{i}:\n  name: Person {i}\n  relation: aunt\n  phone: 07700 900123\n"
    f"  notes: |\n    Visited at home.\n    No concerns noted.\n  visits: [2026-01-{10 + i}, 45]\n"
    for i in range(30)
)
LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)
ALIASES = "x: [" + ",".join(["*a"] * 100_000) + "]\n"
DEEP = "[" * 10_000 + "]" * 10_000
BRACKETS = "[" * 1_000_000


def median_seconds(work: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def cmgit_load(text: str) -> Callable[[], object]:
    def load() -> object:
        try:
            return yamlio.load(text)
        except ParseError:
            return None

    return load


def plain_load(text: str) -> Callable[[], object]:
    def load() -> object:
        try:
            return yaml.load(text, Loader=yaml.CBaseLoader)
        except yaml.YAMLError:
            return None

    return load


ROWS = [
    # name, text, limit in seconds, anchor text, runs
    ("4 KB form, loaded", FORM, 0.005, FORM, 50),
    ("billion laughs, refused", LAUGHS, 0.1, LAUGHS, 20),
    ("100,000 aliases, refused", ALIASES, 0.1, ALIASES[:4096], 20),
    ("10,000 deep brackets, refused", DEEP, 0.5, DEEP[:4096], 10),
    ("a megabyte of brackets, refused", BRACKETS, 0.5, BRACKETS[:4096], 10),
]


def main() -> int:
    print(f"{'target':34} {'cmgit':>10} {'limit':>10} {'anchor':>10}  result")
    failed = 0
    for name, text, limit, anchor_text, runs in ROWS:
        measured = median_seconds(cmgit_load(text), runs)
        anchor = median_seconds(plain_load(anchor_text), runs)
        verdict = "PASS" if measured <= limit else "FAIL"
        failed += verdict == "FAIL"
        print(
            f"{name:34} {measured * 1e3:8.2f}ms {limit * 1e3:8.1f}ms {anchor * 1e3:8.2f}ms  "
            f"{verdict}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
