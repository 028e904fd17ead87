"""Load (hostile P1-P4, P6) at a small size; the 10k/100k versions are benchmarks in bench/.

Times are compared with each other rather than with fixed limits, so a busy machine does
not fail the suite; the limits of the test plan are checked by the benchmarks.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import subprocess
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cmgit import entries, ids
from cmgit.store import Repository

from ..conftest import TODAY, Programme, form
from .faults_support import assert_consistent, git_ok

RECORDS = 200
SOP = Path(__file__).resolve().parents[2] / "site" / "sop"


@pytest.fixture(scope="module")
def many_template(
    programme_template: Programme, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Programme]:
    """The test programme with RECORDS cases made through the store."""
    base = tmp_path_factory.mktemp("many")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(base))
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        shutil.copytree(programme_template.root.parent, base / "prog", symlinks=True)
        made = Programme(base / "prog" / "cases", base / "prog" / "keys", base / "prog" / "work")
        repo = Repository.open(made.root)
        data = yaml.safe_dump(form("identification")).encode()
        day = dt.date.fromisoformat(TODAY)
        for i in range(RECORDS):
            worker = ("cw-north-1", "cw-north-2", "cw-south-1")[i % 3]
            repo.new_case(made.identities(worker), data, today=day)
        repo.git.objects.close()
        made.git("gc", "-q")  # one pack instead of thousands of loose files to copy
        yield made


@pytest.fixture
def many(many_template: Programme, tmp_path: Path) -> Programme:
    base = tmp_path / "many"
    shutil.copytree(many_template.root.parent, base, symlinks=True)
    return Programme(base / "cases", base / "keys", base / "work")


def succeeded(programme: Programme, *args: str, as_: str | None = None) -> str:
    result = programme.cli(*args, as_=as_)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_P1_P3_stats_full_and_incremental_audit(many: Programme) -> None:
    """P1/P3 (small): stats and a full verify over RECORDS records; an incremental verify
    of new commits checks exactly those (its speed is measured in bench/), and a history
    rewritten under the checkpoint is still caught."""
    assert len(many.repo().case_ids()) == RECORDS
    assert json.loads(succeeded(many, "stats", "--json"))
    assert json.loads(succeeded(many, "audit", "--json"))["checked"] > RECORDS
    repo = many.repo()
    for case_id in repo.case_ids()[:5]:
        worker = repo.load_open(case_id).record.open["caseworker"]
        assert (
            many.cli(
                "record", case_id, "note", "--from", many.form_file("note"), as_=worker
            ).exit_code
            == 0
        )
    report = json.loads(succeeded(many, "audit", "--json"))
    assert report["checked"] == 5 and report["ok"]
    many.git("reset", "-q", "--hard", "HEAD~2")
    result = many.cli("audit", "--json", as_=None)
    assert result.exit_code == 6
    assert "history-rewritten" in {v["rule"] for v in json.loads(result.stdout)["violations"]}


def test_P2_stats_need_no_key_and_little_memory(many_template: Programme) -> None:
    """P2 (small): "memory bounded (do not hold all plaintext)": stats run with no identity,
    so no plaintext exists to hold; peak memory stays within a small multiple of the
    sealed records' size (their open files and sealed entries)."""
    sizes = sum(p.stat().st_size for p in (many_template.root / "records").rglob("*.yaml"))
    sizes += sum(p.stat().st_size for p in (many_template.root / "sealed").rglob("*.age"))
    succeeded(many_template, "stats", "--json", as_=None)  # imports and configuration: not data
    shutil.rmtree(many_template.root / ".git" / "cmgit" / "cache")  # read every record again
    tracemalloc.start()
    try:
        succeeded(many_template, "stats", "--json", as_=None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Records are streamed one at a time; what stays is their open fields.
    assert peak < 4 * sizes


def packed_size(root: Path) -> int:
    subprocess.run(
        ["git", "-C", str(root), "gc", "-q", "--prune=now"],
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    )
    stats = dict(
        line.split(": ") for line in git_ok(root, "count-objects", "-v").stdout.splitlines()
    )
    return (int(stats["size-pack"]) + int(stats["size"])) * 1024


@pytest.mark.parametrize("edits", [200, pytest.param(1000, marks=pytest.mark.slow)])
def test_P4_growth_of_many_edits_of_one_record(programme: Programme, edits: int) -> None:
    """P4: "growth ~ edits x ciphertext size" (every save is a new sealed entry of what
    it changed, with no delta against the last, and a small open file); the SOP
    documents a `git gc` policy."""
    case_id = programme.new_case()
    repo = programme.repo()
    me = programme.identities("cw-north-1")
    day = dt.date.fromisoformat(TODAY)
    record = programme.root / ids.record_path(case_id)
    before = packed_size(programme.root)
    sizes = []
    for i in range(edits):
        old, new = ("CANARY", "CANARY-x") if i % 2 == 0 else ("CANARY-x", "CANARY")
        assert repo.edit(
            me,
            case_id,
            lambda text, o=old, n=new: text.replace(o, n, 1),
            lambda _: False,
            today=day,
        )
        entry = programme.root / entries.entry_path(case_id, i + 2)
        sizes.append(record.stat().st_size + entry.stat().st_size)
    growth = packed_size(programme.root) - before
    sealed = sum(sizes)  # binary age: the sealed bytes are the file's
    assert 0.8 * sealed < growth < 1.6 * sealed, (growth, sealed)
    assert_consistent(programme)
    policy = " ".join(p.read_text() for p in SOP.glob("*.md"))
    assert "git gc" in policy


def test_P6_fan_out_keeps_folders_small(many_template: Programme) -> None:
    """P6: "no directory over ~1,000 entries" for a synthetic 100k set; `git status` stays
    fast at the small size."""
    rng = random.Random(6)
    folders = Counter(
        ids.record_path(ids.new_case_id("CP", rng.randbytes(5))).split("/")[1]
        for _ in range(100_000)
    )
    assert len(folders) <= 1024 and max(folders.values()) < 1000
    real = Counter(p.parent.name for p in (many_template.root / "records").rglob("*.yaml"))
    assert sum(real.values()) == RECORDS and max(real.values()) < 1000
    status = git_ok(many_template.root, "status", "--porcelain")
    assert status.returncode == 0 and status.stdout == ""
