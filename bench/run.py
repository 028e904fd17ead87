"""The scale targets of cmgit, each measured beside its anchor in the same run.

    python bench/run.py 10000 100000          # the full run `make bench` makes
    python bench/run.py 100 --runs 1 --out -  # a smoke run

For each size it takes the generated programme (bench/generate.py, cached), clones it,
and times every target and its anchor: medians of ``--runs`` runs after one warm-up.
Then the same programme generated in record format 2 (sealed entries) is measured
against the format-2 targets of #17: growth per commit, the auditor's clone, a
deactivation, a purge and the first write after a clone (``--formats 1`` skips them).
It prints a table with the ratio and PASS or FAIL per target and writes the tables, with
the machine they came from, to bench/RESULTS.md (``--out``).
"""

from __future__ import annotations

import argparse
import compileall
import csv
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import generate

from cmgit import entries, ids
from cmgit.audit import AuditState, config_in_force

BIN = Path(sys.executable).parent
CMGIT = str(BIN / "cmgit")
TODAY = generate.TODAY.isoformat()
HERE = Path(__file__).parent


@dataclass
class Target:
    name: str
    measured: float
    limit: float
    unit: str
    detail: str

    @property
    def passed(self) -> bool:
        return self.measured <= self.limit

    def row(self) -> list[str]:
        over_none = float("inf") if self.measured else 0.0  # a limit of none: a count
        ratio = self.measured / self.limit if self.limit else over_none
        return [
            self.name,
            f"{self.measured:.3g} {self.unit}",
            f"{self.limit:.3g} {self.unit}",
            f"{ratio:.2f}",
            "PASS" if self.passed else "FAIL",
            self.detail,
        ]


@dataclass
class Size:
    cases: int
    commits: int = 0
    layout: int = 1
    targets: list[Target] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)


def run(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: int | None = None,
) -> float:
    """Seconds one command takes; it must succeed."""
    start = time.perf_counter()
    done = subprocess.run(
        args,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=stdin,
    )
    took = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(args[:3])} failed: {done.stderr.decode()[-2000:]}")
    return took


def median(
    runs: int,
    work: Callable[[], float],
    before: Callable[[], None] | None = None,
    warm: bool = True,
) -> float:
    """Median of ``runs`` timings after one warm-up; ``before`` runs untimed each time."""
    times = []
    for n in range(runs + (1 if warm else 0)):
        if before:
            before()
        took = work()
        if n or not warm:
            times.append(took)
    return statistics.median(times)


PEAK = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_memory(args: Sequence[str], cwd: Path, env: dict[str, str]) -> float:
    """Peak resident memory, in MB, of the largest process a command runs (itself, its
    workers, the git processes it starts)."""
    return timed_with_memory(args, cwd, env)[1]


def timed_with_memory(args: Sequence[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Seconds and peak memory (MB) of one run of a long command."""
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", PEAK, *args],
        cwd=cwd,
        check=True,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    ).stdout
    return time.perf_counter() - start, int(out.strip()) / 1024


def floor(kind: str, repo: Path, *extra: str) -> float:
    return run([sys.executable, str(HERE / "floors.py"), kind, str(repo), *extra])


# -- one size -----------------------------------------------------------------------------


def measure(cases: int, runs: int, sample: int, work: Path) -> Size:
    base = generate.programme(cases)
    repo = work / f"cases-{cases}"
    subprocess.run(["git", "clone", "-q", str(base / "cases"), str(repo)], check=True)
    keys = base / "keys"
    size = Size(cases)
    size.commits = int(
        subprocess.run(
            ["git", "rev-list", "--count", "HEAD"],
            cwd=repo,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    pm = {"CMGIT_IDENTITY": str(keys / "pm-001.txt"), "CMGIT_TODAY": TODAY}
    keyless = {"CMGIT_TODAY": TODAY}
    f = size.figures

    def cmgit(*args: str, env: dict[str, str] | None = None) -> Callable[[], float]:
        return lambda: run([CMGIT, *args], cwd=repo, env=env or keyless)

    def forget_caches() -> None:
        shutil.rmtree(repo / ".git" / "cmgit" / "cache", ignore_errors=True)

    f["startup"] = median(runs, lambda: run([sys.executable, "-c", "pass"]))
    f["import click"] = median(runs, lambda: run([sys.executable, "-c", "import click"]))
    f["cmgit --help"] = median(runs, cmgit("--help"))
    size.targets.append(
        Target(
            "cmgit --help",
            f["cmgit --help"],
            2 * f["import click"],
            "s",
            "limit: 2x python -c 'import click'",
        )
    )

    # Keyless reads.
    f["git ls-tree -r"] = median(
        runs, lambda: run(["git", "ls-tree", "-r", "HEAD", "records/"], cwd=repo)
    )
    f["floor: open fields, all cores"] = median(runs, lambda: floor("open", repo))
    for command in ("stats", "list", "due"):
        first = median(runs, cmgit(command), before=forget_caches, warm=False)
        again = median(runs, cmgit(command))
        f[f"cmgit {command}, first run"] = first
        f[f"cmgit {command}, repeated"] = again
        size.targets.append(
            Target(
                f"cmgit {command} (repeated)",
                again,
                f["startup"] + 3 * f["git ls-tree -r"],
                "s",
                "limit: startup + 3x git ls-tree -r HEAD records/",
            )
        )
        size.targets.append(
            Target(
                f"cmgit {command} (first run)",
                first,
                1.5 * f["floor: open fields, all cores"],
                "s",
                "limit: 1.5x parsing every record's open fields, all cores",
            )
        )

    # One case's history, over git's commit-graph with changed-path filters as cmgit keeps
    # it (written whole by sync; the generator's history is written without cmgit's sync).
    f["git commit-graph write, whole history"] = run(
        ["git", "commit-graph", "write", "--reachable", "--changed-paths", "--split"], cwd=repo
    )
    case_id = sorted((repo / "records").rglob("*.yaml"))[cases // 2].stem
    path = ids.record_path(case_id)
    f["git log -- PATH"] = median(
        runs, lambda: run(["git", "log", "--format=%H", "--", path], cwd=repo)
    )
    f["cmgit log ID"] = median(runs, cmgit("log", case_id))
    size.targets.append(
        Target(
            "cmgit log ID",
            f["cmgit log ID"],
            2 * f["git log -- PATH"],
            "s",
            "limit: 2x git log --format=%H -- PATH over the same commit-graph",
        )
    )

    # Guard GC: a commit's free text screened against the caseload of the caseworker with
    # the most open cases, as a commit of cmgit's own runs it (the configuration's); and
    # the whole commit-msg hook, a process of its own, as git runs it.
    took, worker, screened = _name_check(repo, keys, runs)
    f["GC check over the largest caseload"] = took
    f["cases opened by the GC check"] = screened
    message = work / "commit-message.txt"
    message.write_text("Fix a typo in the referral page\n")
    as_worker = {**keyless, "CMGIT_IDENTITY": str(keys / f"{worker}.txt")}
    f["cmgit hooks commit-msg"] = median(
        runs, cmgit("hooks", "commit-msg", str(message), env=as_worker)
    )
    size.targets.append(
        Target(
            "GC check of a commit (caseload)",
            took,
            0.2,
            "s",
            f"limit: 0.2 s ({screened} cases of {worker} screened; the whole commit-msg "
            f"hook, Python start included, {f['cmgit hooks commit-msg']:.2f} s)",
        )
    )

    # Sealed bulk read.
    f["floor: decrypt+parse+validate, all cores"] = median(
        runs, lambda: floor("sealed", repo, str(keys / "pm-001.txt"))
    )
    f["cmgit validate"] = median(runs, cmgit("validate", env=pm))
    size.targets.append(
        Target(
            "cmgit validate (throughput)",
            f["cmgit validate"],
            f["floor: decrypt+parse+validate, all cores"] / 0.7,
            "s",
            "limit: at least 70% of the floor's throughput",
        )
    )
    pm_signing = {**pm, "CMGIT_SIGNING_KEY": str(keys / "pm-001.ssh")}
    f["cmgit config commit, migrating every record"] = median(
        min(runs, 3), lambda: _migration(repo, work, pm_signing), warm=False
    )
    size.targets.append(
        Target(
            "migration of every record",
            f["cmgit config commit, migrating every record"],
            2 * f["cmgit validate"],
            "s",
            "limit: 2x cmgit validate with the programme manager's key (an open value "
            "renamed, with its form field, by a migration)",
        )
    )
    if shutil.which("age"):
        per_age = _age_loop(repo, keys / "pm-001.txt", min(sample, cases), work)
        f["age -d per record"] = per_age
        per_record = f["cmgit validate"] / cases
        size.targets.append(
            Target(
                "cmgit validate (per record)",
                per_record * 1000,
                per_age / 10 * 1000,
                "ms",
                f"limit: 1/10 of an `age -d` per file ({per_age * 1000:.1f} ms, "
                f"{min(sample, cases)} files)",
            )
        )
    else:
        print("age is not installed: the `age -d` anchor is not measured", file=sys.stderr)

    # History.
    state = repo / ".git" / "cmgit" / "audit-verified"
    audit_memory: list[float] = []

    def full_audit() -> float:
        took, memory = timed_with_memory([CMGIT, "audit"], repo, keyless)
        audit_memory.append(memory)
        return took

    # The full audit and `git fsck` in alternating pairs, so load falls on both alike.
    audits, checks = [], []
    for n in range(runs + 1):
        state.unlink(missing_ok=True)
        took = full_audit()
        fsck = run(["git", "fsck", "--no-progress"], cwd=repo)
        if n:  # the first pair warms the caches
            audits.append(took)
            checks.append(fsck)
    f["cmgit audit, full"] = statistics.median(audits)
    f["git fsck"] = statistics.median(checks)
    f["cmgit audit / git fsck, median of pairs"] = statistics.median(
        a / c for a, c in zip(audits, checks, strict=True)
    )
    per_commit = f["cmgit audit, full"] / size.commits
    per_git = _git_signatures(repo, keys, min(sample, size.commits))
    f["git log %G? per commit"] = per_git
    size.targets.append(
        Target(
            "cmgit audit (per commit)",
            per_commit * 1000,
            per_git / 30 * 1000,
            "ms",
            f"limit: 1/30 of git log --format=%G? ({per_git * 1000:.1f} ms a commit, sampled)",
        )
    )
    size.targets.append(
        Target(
            "cmgit audit (full)",
            f["cmgit audit, full"],
            1.5 * f["git fsck"],
            "s",
            f"limit: 1.5x git fsck (median of {runs} alternating pairs; median ratio"
            f" of pairs {f['cmgit audit / git fsck, median of pairs']:.2f})",
        )
    )

    # Moves, each beside a plain signed git commit, then the incremental audit of the moves.
    moves, commits = _moves_beside_git(repo, keys, work, max(20, min(100, cases // 20)))
    f["cmgit move"] = statistics.median(moves)
    f["git add + git commit of one file"] = statistics.median(commits)
    f["cmgit move / git commit, median of pairs"] = statistics.median(
        m / c for m, c in zip(moves, commits, strict=True)
    )
    made = len(moves)
    tip = subprocess.run(
        ["git", "rev-parse", f"HEAD~{made}"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()

    def forget_new_commits() -> None:
        AuditState(repo / ".git").save(tip, actors_proven=True)  # as the audit of tip left it

    f[f"cmgit audit, {made} new commits"] = median(runs, cmgit("audit"), before=forget_new_commits)
    size.targets.append(
        Target(
            f"cmgit audit (incremental, {made} commits)",
            f[f"cmgit audit, {made} new commits"],
            0.05 * f["cmgit audit, full"],
            "s",
            "limit: 5% of the full audit",
        )
    )
    # Import: a Primero-style CSV of as many rows as the programme has cases.
    f[f"cmgit import, {cases} rows"], f[f"floor: seal {cases} rows, one batch"] = _import(
        repo, work, cases, pm_signing, min(runs, 3)
    )
    size.targets.append(
        Target(
            f"cmgit import ({cases:,} rows)",
            f[f"cmgit import, {cases} rows"],
            2 * f[f"floor: seal {cases} rows, one batch"],
            "s",
            "limit: 2x sealing the same rows' forms with pyrage, all cores, written as one "
            "batch of git objects (git fast-import)",
        )
    )
    f["cmgit site build"] = median(runs, cmgit("site", "build", "--out", str(work / "site")))
    f["mkdocs build"] = _plain_mkdocs(repo, work, runs)
    size.targets.append(
        Target(
            "cmgit site build",
            f["cmgit site build"],
            1.5 * f["mkdocs build"],
            "s",
            "limit: 1.5x plain mkdocs build of the same pages",
        )
    )
    memory = {
        name: peak_memory([CMGIT, *args], repo, env)
        for name, args, env in (
            ("validate", ["validate"], pm),
            ("stats", ["stats"], keyless),
            ("list", ["list"], keyless),
            ("audit", ["audit", "--since", tip], keyless),
            ("site build", ["site", "build", "--out", str(work / "site")], keyless),
        )
    }
    memory["audit (full)"] = max(audit_memory)
    f.update({f"peak memory {k} (MB)": v for k, v in memory.items()})
    worst = max(memory, key=lambda k: memory[k])
    size.targets.append(
        Target("peak memory of bulk commands", memory[worst], 500, "MB", f"largest: {worst}")
    )
    size.targets.append(
        Target(
            "cmgit move",
            f["cmgit move"],
            2 * f["git add + git commit of one file"],
            "s",
            f"limit: 2x git add FILE && git commit, signed (median of {made} alternating"
            f" pairs; median ratio of pairs {f['cmgit move / git commit, median of pairs']:.2f})",
        )
    )
    return size


# -- record format 2 (sealed entries) ---------------------------------------------------

GROWTH_LIMIT = 2048  # packed bytes per commit (#17)
PURGE_LIMIT = 5.0  # seconds
PURGE_DAY = "2028-06-01"  # past the layout-2 programme's retention of its closed cases
NOTE = {"written_on": TODAY, "text": "Visited the family; the child is at school."}


def measure_format_2(cases: int, runs: int, work: Path) -> Size:
    """The format-2 targets of #17 on the programme generated in sealed entries, each
    beside its anchor; growth beside the format-1 programme of the same size."""
    base = generate.programme(cases, layout=2)
    keys = base / "keys"
    size = Size(cases, layout=2)
    f = size.figures
    f["format 1: packed bytes per commit"], _ = _packed_per_commit(
        generate.programme(cases) / "cases", work / "growth-1"
    )
    packed = work / "growth-2"
    f["format 2: packed bytes per commit"], size.commits = _packed_per_commit(
        base / "cases", packed
    )
    size.targets.append(
        Target(
            "growth per commit (format 2)",
            f["format 2: packed bytes per commit"],
            GROWTH_LIMIT,
            "B",
            "pack size / commits after a default gc's delta search on every object "
            f"(git repack -adf); format 1: {f['format 1: packed bytes per commit']:.0f} B a commit",
        )
    )
    _auditor_clone(packed, work, size)
    shutil.rmtree(packed)

    repo = work / "cases-format-2"
    _clone_with_keyring(base / "cases", repo)
    moves = _moves(repo, keys, max(3, runs))
    f["cmgit move (format 2)"] = statistics.median(moves)
    pm = _as(keys, "pm-001")
    f[f"cmgit staff deactivate, {generate.LEAVER_CASES} closed cases"] = run(
        [CMGIT, "staff", "deactivate", generate.LEAVER], cwd=repo, env=pm
    )
    size.targets.append(
        Target(
            f"deactivation ({generate.LEAVER_CASES} closed cases)",
            f[f"cmgit staff deactivate, {generate.LEAVER_CASES} closed cases"],
            2 * f["cmgit move (format 2)"],
            "s",
            f"limit: 2x one cmgit move (median of {len(moves)}, same programme)",
        )
    )
    took, rewritten, left = _purge(repo, keys)
    f["cmgit purge, authorised"] = took
    size.targets += [
        Target(
            "purge of one case",
            took,
            PURGE_LIMIT,
            "s",
            "the second programme manager's purge, the keyring's prune included",
        ),
        Target(
            "purge: wrapped key left",
            left,
            0,
            "files",
            "the case's keyring files still among the repository's objects after it",
        ),
        Target(
            "purge: record packs rewritten",
            rewritten,
            0,
            "packs",
            "pack files removed or replaced by it (no repack of the records)",
        ),
    ]
    # Cases still registered in the generated programme: not among those moved above.
    cases_to_note = _registered(repo)[: min(runs, 3)]
    first, second = _first_write(base / "cases", keys, work, cases_to_note)
    f["cmgit record, first after a clone"] = first
    f["cmgit record, second after a clone"] = second
    size.targets.append(
        Target(
            "first write after a clone",
            first,
            2 * second,
            "s",
            "limit: 2x the second cmgit record ID note in the same fresh clone",
        )
    )
    return size


def _git(*args: str, cwd: Path, stdin: str | None = None, ok: bool = False) -> str:
    """git's output; with ``ok``, empty where git fails."""
    done = subprocess.run(
        ["git", *args], cwd=cwd, check=not ok, capture_output=True, text=True, input=stdin
    )
    return done.stdout if done.returncode == 0 else ""


def _pack_bytes(repo: Path) -> int:
    return sum(p.stat().st_size for p in (repo / ".git" / "objects" / "pack").glob("*.pack"))


def _packed_per_commit(source: Path, target: Path) -> tuple[float, int]:
    """Packed bytes per commit of ``source``'s main history after a default `git gc`
    in a clone of it, and how many commits it has.

    A programme's commits are loose objects until git packs them, searching deltas for
    every one with its default window and depth. The generator writes its objects
    straight into a pack, and `git gc` would keep that pack's choices, so the clone is
    repacked with the same search done afresh (`-f`): what a default gc makes of a
    programme's own history."""
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", "--single-branch", str(source), str(target)], check=True)
    run(["git", "repack", "-a", "-d", "-f", "-q"], cwd=target)
    commits = int(_git("rev-list", "--count", "HEAD", cwd=target))
    return _pack_bytes(target) / commits, commits


def _auditor_clone(source: Path, work: Path, size: Size) -> None:
    """An auditor's clone (`--filter=blob:limit=1024`) beside a full clone of the same
    programme: no sealed entry fetched, and the size of the full clone minus its entries."""
    f = size.figures
    run(["git", "config", "uploadpack.allowFilter", "true"], cwd=source)
    url = source.resolve().as_uri()
    full, auditor = work / "clone-full", work / "clone-auditor"
    # --no-checkout: a checkout of HEAD would fetch every entry the filter left out.
    clone = ["git", "clone", "-q", "--no-local", "--single-branch", "--no-checkout"]
    run([*clone, url, str(full)])
    run(
        [
            *clone,
            f"--filter=blob:limit={entries.AUDITOR_BLOB_LIMIT}",
            url,
            str(auditor),
        ]
    )
    sealed = [
        line.split(" ", 1)[0]
        for line in _git("rev-list", "--objects", "HEAD", cwd=full).splitlines()
        if entries.parse_entry_path(line.partition(" ")[2]) is not None
    ]
    sizes = _git(
        "cat-file", "--batch-check=%(objectsize:disk)", cwd=full, stdin="\n".join(sealed)
    ).split()
    sealed_bytes = sum(int(n) for n in sizes)
    present = [
        line.split(" ", 1)[0]
        for line in _git(
            "rev-list", "--objects", "--missing=print", "HEAD", cwd=auditor
        ).splitlines()
        if not line.startswith("?") and entries.parse_entry_path(line.partition(" ")[2])
    ]
    f["full clone (MB)"] = _pack_bytes(full) / 1e6
    f["sealed entries in it (MB)"] = sealed_bytes / 1e6
    f["auditor clone (MB)"] = _pack_bytes(auditor) / 1e6
    f["sealed entries in the auditor clone"] = len(present)
    size.targets.append(
        Target(
            "auditor clone: sealed entries fetched",
            len(present),
            0,
            "entries",
            f"git clone --filter=blob:limit={entries.AUDITOR_BLOB_LIMIT} --no-checkout; "
            f"{len(sealed):,} entries in history",
        )
    )
    size.targets.append(
        Target(
            "auditor clone: size",
            f["auditor clone (MB)"],
            1.1 * (f["full clone (MB)"] - f["sealed entries in it (MB)"]),
            "MB",
            f"limit: 1.1x (full clone {f['full clone (MB)']:.3g} MB minus its sealed "
            f"entries {f['sealed entries in it (MB)']:.3g} MB)",
        )
    )
    shutil.rmtree(full)
    shutil.rmtree(auditor)


def _clone_with_keyring(source: Path, target: Path) -> None:
    """A clone of ``source`` as an office makes one: `cmgit clone`, the keyring fetched on
    its own."""
    subprocess.run(
        [CMGIT, "clone", str(source), target.name],
        cwd=target.parent,
        check=True,
        capture_output=True,
    )


def _listed(repo: Path, state: str, today: str = TODAY) -> list[dict[str, str]]:
    """The cases in ``state``, as `cmgit list --json` gives them."""
    out = subprocess.run(
        [CMGIT, "list", "--json", "--state", state],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "CMGIT_TODAY": today},
    ).stdout
    cases: list[dict[str, str]] = json.loads(out)
    return cases


def _registered(repo: Path) -> list[dict[str, str]]:
    return _listed(repo, "registered")


def _as(keys: Path, staff_id: str, today: str = TODAY) -> dict[str, str]:
    return {
        "CMGIT_IDENTITY": str(keys / f"{staff_id}.txt"),
        "CMGIT_SIGNING_KEY": str(keys / f"{staff_id}.ssh"),
        "CMGIT_TODAY": today,
    }


def _moves(repo: Path, keys: Path, count: int) -> list[float]:
    """Seconds of ``count`` `cmgit move`s of registered cases to assessment."""
    cases = _registered(repo)[:count]
    return [
        run([CMGIT, "move", c["case_id"], "assessment"], cwd=repo, env=_as(keys, c["caseworker"]))
        for c in cases
    ]


def _purge(repo: Path, keys: Path) -> tuple[float, int, int]:
    """Seconds of the authorising `cmgit purge` of one closed case (proposed by one
    programme manager, done by the second); how many pack files it removed or replaced,
    and how many of the case's keyring files are still in the repository after it."""
    from cmgit.history import Git
    from cmgit.keyring import ref

    case_id = _listed(repo, "closed", PURGE_DAY)[-1]["case_id"]
    wrapped = [
        hashlib.sha1(b"blob %d\0%s" % (len(data), data)).hexdigest()  # git's blob id
        for data in ref.read_case(Git(repo), case_id).values()
    ]
    packs = repo / ".git" / "objects" / "pack"

    def record_packs() -> dict[str, int]:
        return {p.name: p.stat().st_ino for p in packs.glob("*.pack")}

    before = record_packs()
    purge = [CMGIT, "purge", case_id, "--reason", "retention_ended"]
    run(purge, cwd=repo, env=_as(keys, "pm-001", PURGE_DAY))
    took = run(purge, cwd=repo, env=_as(keys, generate.SECOND_MANAGER, PURGE_DAY))
    if not wrapped:
        raise SystemExit(f"the keyring holds no files for {case_id}")
    left = [oid for oid in wrapped if _git("cat-file", "-t", oid, cwd=repo, ok=True)]
    after = record_packs()
    return took, sum(after.get(name) != inode for name, inode in before.items()), len(left)


def _first_write(
    source: Path, keys: Path, work: Path, cases: list[dict[str, str]]
) -> tuple[float, float]:
    """Medians of the first and the second `cmgit record ID note`, the first cmgit
    commands in a fresh clone of ``source``, one clone per case of ``cases``."""
    firsts, seconds = [], []
    for case in cases:
        clone = work / "fresh-clone"
        shutil.rmtree(clone, ignore_errors=True)
        _clone_with_keyring(source, clone)
        env = _as(keys, case["caseworker"])
        note = work / "note.yaml"
        times = []
        for visit in ("first", "second"):
            body = {
                "note": {
                    **NOTE,
                    "written_by": case["caseworker"],
                    "text": f"{NOTE['text']} ({visit})",
                }
            }
            note.write_text(json.dumps(body))
            times.append(
                run(
                    [CMGIT, "record", case["case_id"], "note", "--from", str(note)],
                    cwd=clone,
                    env=env,
                )
            )
        firsts.append(times[0])
        seconds.append(times[1])
        shutil.rmtree(clone)
    return statistics.median(firsts), statistics.median(seconds)


def _name_check(repo: Path, keys: Path, runs: int) -> tuple[float, str, int]:
    """Median seconds of guard GC over a one-line commit message, repository opened
    included, for the caseworker with the most open cases; who, and how many cases."""
    from cmgit.store import Repository, load_identities
    from cmgit.store.screening import personal_strings, screen

    worker = max(sorted(Repository.open(repo).caseloads().items()), key=lambda kv: kv[1])[0]
    identities = load_identities(keys / f"{worker}.txt")
    texts = {"the commit message": "Fix a typo in the referral page"}

    def check() -> float:
        start = time.perf_counter()
        screen(Repository.open(repo), identities, texts)
        return time.perf_counter() - start

    screened = len(personal_strings(Repository.open(repo), identities, texts))
    return median(runs, check), worker, screened


def _age_loop(repo: Path, key: Path, count: int, work: Path) -> float:
    """Seconds per file of `age -d` over ``count`` sealed blocks, one process each."""
    folder = work / "age-sample"
    folder.mkdir(exist_ok=True)
    files = sorted((repo / "records").rglob("*.yaml"))[:count]
    paths = []
    for n, path in enumerate(files):
        text = path.read_text().split("sealed: |\n", 1)[1]
        target = folder / f"{n}.age"
        target.write_text("".join(line[2:] + "\n" for line in text.splitlines()))
        paths.append(target)
    start = time.perf_counter()
    for target in paths:
        subprocess.run(
            ["age", "-d", "-i", str(key), str(target)], check=True, stdout=subprocess.DEVNULL
        )
    return (time.perf_counter() - start) / len(paths)


def _git_signatures(repo: Path, keys: Path, count: int) -> float:
    """Seconds per commit of git verifying SSH signatures (`git log --format=%G?`)."""
    import yaml

    signers = keys.parent / "allowed_signers"
    staff = yaml.safe_load((repo / "staff.yaml").read_text())["staff"]
    lines = [
        f"{staff_id}@cmgit.invalid {member['signing_key']}"
        for staff_id, member in staff.items()
        if member.get("signing_key")
    ]
    signers.write_text("\n".join(lines) + "\n")
    start = time.perf_counter()
    out = subprocess.run(
        [
            "git",
            "-c",
            "gpg.format=ssh",
            "-c",
            f"gpg.ssh.allowedSignersFile={signers}",
            "log",
            f"-{count}",
            "--format=%G?",
        ],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    took = time.perf_counter() - start
    if out.count("G") < len(out) * 0.9:
        raise SystemExit("git did not verify the signatures: check the allowed signers")
    return took / len(out)


MIGRATED_VALUE = ("with_primary_caregiver", "with_caregiver")


def _migration(repo: Path, work: Path, env: dict[str, str]) -> float:
    """Seconds of one `cmgit config commit` that renames a value of an open field and of
    the form field it summarises, bringing every record along by a migration, in a
    throwaway clone of the programme (the clone is not timed)."""
    clone = work / "migration-clone"
    shutil.rmtree(clone, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    common = clone / "schemas" / "common.schema.json"
    old, new = MIGRATED_VALUE
    common.write_text(common.read_text().replace(f'"{old}"', f'"{new}"'))
    folder = clone / "schemas" / "migrations"
    folder.mkdir(exist_ok=True)
    formats = [int(p.name[:4]) for p in folder.glob("[0-9][0-9][0-9][0-9]-*.yaml")]
    number = max(formats, default=1) + 1
    (folder / f"{number:04d}-bench-rename.yaml").write_text(
        f"format: {number}\nreason: bench_rename\nsteps:\n"
        f"  - map_values: {{field: separation_status, values: {{{old}: {new}}}}}\n"
        f"  - map_values: {{field: registration.separation_status, values: {{{old}: {new}}}}}\n"
    )
    took = run([CMGIT, "config", "commit", "-m", "bench_rename"], cwd=clone, env=env)
    shutil.rmtree(clone)
    return took


IMPORT_MAP = HERE.parent / "cmgit" / "maps" / "primero.yaml"


def _import(
    repo: Path, work: Path, rows: int, env: dict[str, str], runs: int
) -> tuple[float, float]:
    """Median seconds of `cmgit import` of ``rows`` Primero-style rows, each run into a
    throwaway clone (the clone is not timed), and of the floor beside it."""
    from cmgit.store import Repository

    workers = sorted(
        m.id
        for m in Repository.open(repo).registry.staff.values()
        if m.role == "caseworker" and m.active
    )
    source = work / "import.csv"
    with open(source, "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(
            [
                "case_id_display",
                "name",
                "sex",
                "age",
                "registration_date",
                "workflow",
                "risk_level",
                "owned_by",
                "protection_concerns",
                "location_current",
            ]
        )
        for n in range(rows):
            out.writerow(
                [
                    f"PRI-{n:06d}",
                    f"Child {n}",
                    "female" if n % 2 else "male",
                    str(3 + n % 14),
                    f"2025-{1 + n % 12:02d}-{1 + n % 28:02d}",
                    ("new", "registration", "case_plan")[n % 3],
                    ("high", "medium", "low")[n % 3],
                    workers[n % len(workers)],
                    "neglect;separated",
                    f"Camp {n % 9}",
                ]
            )
    imports, floors = [], []
    for _ in range(runs):
        clone = work / "import-clone"
        shutil.rmtree(clone, ignore_errors=True)
        subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
        imports.append(
            run([CMGIT, "import", str(source), "--map", str(IMPORT_MAP)], cwd=clone, env=env)
        )
        shutil.rmtree(clone)
        target = work / "import-floor.git"
        floors.append(floor("import", repo, str(source), str(IMPORT_MAP), str(target)))
        shutil.rmtree(target)
    return statistics.median(imports), statistics.median(floors)


def _moves_beside_git(
    repo: Path, keys: Path, work: Path, count: int
) -> tuple[list[float], list[float]]:
    """Up to ``count`` pairs, alternating: a `cmgit move` of a registered case to assessment by
    its caseworker, then the anchor, what a user would otherwise run to commit one changed
    record: `git add FILE && git commit`, signed with the same caseworker's SSH key as the
    repository requires. The anchor commits in a clone of the same repository (same index,
    same trees), so its commits never enter the history cmgit reads."""
    cases = _registered(repo)[:count]  # a small programme has fewer: they all move
    if len(cases) < 2:
        raise SystemExit(f"only {len(cases)} registered cases to move")
    anchor = work / "anchor-clone"
    shutil.rmtree(anchor, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", str(repo), str(anchor)], check=True)
    records = sorted((anchor / "records").rglob("*.yaml"))
    moves, commits = [], []
    for n, case in enumerate(cases):
        worker = case["caseworker"]
        env = _as(keys, worker)
        moves.append(run([CMGIT, "move", case["case_id"], "assessment"], cwd=repo, env=env))
        path = records[n % len(records)]
        with open(path, "a") as handle:
            handle.write(f"#{n}\n")
        git = [
            "git",
            "-c",
            f"user.name={worker}",
            "-c",
            f"user.email={worker}@cmgit.invalid",
            "-c",
            "gpg.format=ssh",
            "-c",
            f"user.signingkey={keys / f'{worker}.ssh'}",
        ]
        relative = path.relative_to(anchor).as_posix()
        commits.append(
            run([*git, "add", relative], cwd=anchor)
            + run([*git, "commit", "-q", "-S", "-m", "bench"], cwd=anchor)
        )
    shutil.rmtree(anchor)
    return moves, commits


def _plain_mkdocs(repo: Path, work: Path, runs: int) -> float:
    """`mkdocs build` of the pages `cmgit site build` generates, already written."""
    import yaml

    from cmgit.site.reference import reference_pages
    from cmgit.site.source import open_source
    from cmgit.site.statistics import report, statistics_page

    source = open_source(repo, in_force=config_in_force)
    docs = work / "mkdocs-docs"
    shutil.rmtree(docs, ignore_errors=True)
    shutil.copytree(repo / "site", docs)
    pages = reference_pages(source)
    pages["statistics/index.md"] = statistics_page(
        source, report(source, generate.TODAY), generate.TODAY
    )
    for name, text in pages.items():
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(text)
    config = yaml.safe_load((repo / "mkdocs.yml").read_text())
    config.update(docs_dir=str(docs), site_dir=str(work / "mkdocs-out"))
    config_file = work / "mkdocs.yml"
    config_file.write_text(yaml.safe_dump(config))
    return median(runs, lambda: run([str(BIN / "mkdocs"), "build", "-q", "-f", str(config_file)]))


# -- report -------------------------------------------------------------------------------

HEADERS = ["target", "measured", "limit", "ratio", "result", "how"]


def table(rows: list[list[str]], headers: list[str]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        memory = int(re.findall(r"\d+", handle.readline())[0]) // 1024 // 1024
    git = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory} GiB, Linux {platform.release()}, "
        f"Python {platform.python_version()}, {git}"
    )


def report(sizes: list[Size], runs: int, *, heading: bool = True) -> str:
    parts = (
        [
            f"# Scale benchmarks\n\nMeasured on {machine()}; each target beside its "
            "anchor in the same run, medians after a warm-up.\n"
        ]
        if heading
        else []
    )
    for size in sizes:
        layout = ", record format 2 (sealed entries)" if size.layout == 2 else ""
        parts.append(
            f"## {size.cases:,} cases{layout} ({size.commits:,} commits)\n\n"
            f"{dt.date.today().isoformat()}, `python bench/run.py {size.cases} "
            f"--runs {runs}`: medians of {runs} run(s).\n"
        )
        parts.append(table([t.row() for t in size.targets], HEADERS) + "\n")
        parts.append(
            table([[k, f"{v:.4g}"] for k, v in size.figures.items()], ["figure", "seconds (or MB)"])
            + "\n"
        )
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", type=int, nargs="+")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--sample",
        type=int,
        default=2000,
        help="files for the age -d loop and commits for git log %%G?",
    )
    parser.add_argument(
        "--out",
        default=str(HERE / "RESULTS.md"),
        help="where to write the report ('-' for nowhere)",
    )
    parser.add_argument(
        "--formats",
        choices=("1", "2", "1,2"),
        default="1,2",
        help="which record formats to measure (format 2: a second programme, generated "
        "in it, measured against its own targets)",
    )
    parser.add_argument(
        "--append",
        action="store_true",
        help="add the sizes measured to the report instead of replacing it",
    )
    args = parser.parse_args()
    # An installed package comes with its bytecode; an editable checkout run with
    # PYTHONDONTWRITEBYTECODE would compile every module on every command instead.
    compileall.compile_dir(HERE.parent / "cmgit", quiet=1)
    sizes = []
    with tempfile.TemporaryDirectory(prefix="cmgit-bench-") as tmp:
        for cases in args.cases:
            measured = []
            if "1" in args.formats:
                measured.append(measure(cases, args.runs, args.sample, Path(tmp)))
            if "2" in args.formats:
                measured.append(measure_format_2(cases, args.runs, Path(tmp)))
            for size in measured:
                layout = ", record format 2" if size.layout == 2 else ""
                print(f"\n{cases:,} cases{layout}, {size.commits:,} commits")
                for target in size.targets:
                    print("  " + "  ".join(target.row()))
            sizes += measured
    if args.out != "-":
        out = Path(args.out)
        if args.append and out.exists():
            out.write_text(out.read_text() + "\n" + report(sizes, args.runs, heading=False))
        else:
            out.write_text(report(sizes, args.runs))
    failed = sum(not t.passed for s in sizes for t in s.targets)
    print(f"\n{'all targets PASS' if not failed else f'{failed} target(s) FAIL'}")


if __name__ == "__main__":
    main()
