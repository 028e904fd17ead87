"""Keyless reads remembered by object id: a cache can be missing, never stale."""

from __future__ import annotations

import datetime as dt
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cmgit import caches, ids, pool, site, stats, store
from cmgit.audit import config_in_force
from cmgit.errors import IntegrityError
from cmgit.history import Git

from .conftest import TODAY, Programme, build_programme

CACHE = Path(".git") / "cmgit" / "cache"


def listed(programme: Programme) -> dict[str, dict]:  # type: ignore[type-arg]
    result = programme.cli("list", "--json", as_=None)
    assert result.exit_code == 0, result.output
    return {row["case_id"]: row for row in json.loads(result.stdout)}


def test_a_change_is_seen_and_only_the_changed_bucket_is_read_again(programme: Programme) -> None:
    first, second = programme.new_case(), programme.new_case()
    assert set(listed(programme)) == {first, second}
    assert (programme.root / CACHE / caches.OPEN_FIELDS_FILE).exists()
    moved = programme.walk("registered")
    rows = listed(programme)
    assert rows[moved]["state"] == "registered" and rows[first]["state"] == "identified"
    # The cache now holds every bucket; a read of an unchanged head reads no blob.
    git = Git.discover(programme.root)
    order = programme.repo().schemas.open_fields
    read = []
    real = caches._read_values
    try:
        caches._read_values = lambda *a, **k: read.append(a) or real(*a, **k)  # type: ignore
        rows = caches.open_rows(git, git.head() or "", order)
    finally:
        caches._read_values = real  # type: ignore[assignment]
    again = {row[order.index("case_id")]: dict(zip(order, row, strict=True)) for row in rows}
    assert not read and again[moved]["state"] == "registered"


def test_a_damaged_or_foreign_cache_file_is_ignored(programme: Programme) -> None:
    case_id = programme.new_case()
    listed(programme)
    for name in (caches.OPEN_FIELDS_FILE, caches.CHANGES_FILE, "config"):
        path = programme.root / CACHE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x00not marshal")
    assert set(listed(programme)) == {case_id}
    stats = programme.cli("stats", "--json", as_=None)
    assert stats.exit_code == 0, stats.output


def test_a_record_that_holds_another_case_is_left_out(programme: Programme) -> None:
    first, second = programme.new_case(), programme.new_case()
    root = programme.root
    # Commit the first record's bytes under the second case's path, by hand.
    (root / ids.record_path(second)).write_bytes((root / ids.record_path(first)).read_bytes())
    programme.git("-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", "swap")
    assert set(listed(programme)) == {first}


@pytest.mark.parametrize("list_all_from", [0, 10_000], ids=["first-run", "per-folder"])
def test_both_ways_of_reading_agree_and_trust_only_the_committed_blob(
    programme: Programme, monkeypatch: pytest.MonkeyPatch, list_all_from: int
) -> None:
    """A first run lists every folder with `git ls-tree` while the cores read the checked-out
    files; a later run reads changed folders one tree each. Either way, a file changed by hand
    and a file holding another case are not what is committed, and are not used."""
    edited, swapped, other = programme.new_case(), programme.new_case(), programme.new_case()
    root = programme.root
    committed = listed(programme)
    shutil.rmtree(root / CACHE)
    path = root / ids.record_path(edited)
    path.write_bytes(path.read_bytes().replace(b"state: identified", b"state: closed"))
    (root / ids.record_path(swapped)).write_bytes((root / ids.record_path(other)).read_bytes())
    (root / ids.record_path(other)).unlink()
    monkeypatch.setattr(caches, "LIST_ALL_FROM", list_all_from)
    assert listed(programme) == committed
    assert committed[edited]["state"] == "identified"


def test_a_folder_name_cannot_pass_for_a_record_entry(programme: Programme) -> None:
    """git's listings are read with one regular expression anchored at each entry: a
    crafted folder whose name looks like an entry is no record, whether the files are
    listed from the index or from the commit's trees."""
    case_id = programme.new_case()
    git = Git.discover(programme.root)
    blob = git.path_entry("HEAD", ids.record_path(case_id))
    assert blob is not None
    fake = "CP-ZZZZZZZZ"
    bucket = ids.bucket(fake)

    def tree(line: str) -> str:
        return git.run("mktree", input=(line + "\n").encode()).decode().strip()

    # records/<bucket>/"x 100644 blob <id>\trecords"/<bucket>/<fake>.yaml: its tail reads
    # like an entry of its own for <fake>.
    leaf = tree(f"100644 blob {blob[1]}\t{fake}.yaml")
    inner = tree(f"040000 tree {leaf}\t{bucket}")
    trick = tree(f"040000 tree {inner}\tx 100644 blob {blob[1]}\trecords")
    records_tree = tree(f"040000 tree {trick}\t{bucket}")
    root = tree(f"040000 tree {records_tree}\trecords")
    who = {
        f"GIT_{role}_{part}": value
        for role in ("AUTHOR", "COMMITTER")
        for part, value in (("NAME", "x"), ("EMAIL", "x@x"))
    }
    commit = git.run("commit-tree", root, "-m", "crafted", env=who).decode().strip()
    assert caches._list_buckets(git, commit) == {}
    listing = git.run("ls-tree", "-r", "-z", commit).decode()
    assert caches._by_bucket(caches._TREE_RECORD_RE.findall(listing)) == {}
    assert caches._list_buckets(git, git.head() or "") == {ids.bucket(case_id): {case_id: blob[1]}}


def test_the_index_stands_for_the_commit_only_where_git_says_so(programme: Programme) -> None:
    """Listed from the index, the committed files are still what is committed: a staged
    change, a staged removal and a staged new file are each undone by `git diff-index`."""
    changed, removed = programme.new_case(), programme.new_case()
    git = Git.discover(programme.root)
    head = git.head() or ""
    committed = caches._list_buckets(git, head)
    path = programme.root / ids.record_path(changed)
    path.write_bytes(path.read_bytes() + b"\n")
    programme.git("add", ids.record_path(changed))
    programme.git("rm", "-q", "--cached", ids.record_path(removed))
    extra = programme.root / ids.record_path("CP-ZZZZZZZZ")
    extra.parent.mkdir(exist_ok=True)
    extra.write_bytes(b"x")
    programme.git("add", ids.record_path("CP-ZZZZZZZZ"))
    assert caches._list_buckets(git, head) == committed
    tree = git.run("ls-tree", "-r", "-z", head).decode()
    assert caches._by_bucket(caches._TREE_RECORD_RE.findall(tree)) == committed


def test_configuration_is_read_again_when_the_registry_changes(programme: Programme) -> None:
    assert programme.repo().registry.get("cw-north-2").active
    listed(programme)  # remembers the configuration
    result = programme.cli("staff", "deactivate", "cw-north-2", as_="pm-001")
    assert result.exit_code == 0, result.output
    assert not programme.repo().registry.get("cw-north-2").active


def test_statistics_are_remembered_per_commit_and_day(programme: Programme) -> None:
    programme.new_case()
    day = dt.date.fromisoformat(TODAY)
    first = site.statistics_report(programme.root, today=day, in_force=config_in_force).as_dict()
    assert (
        site.statistics_report(programme.root, today=day, in_force=config_in_force).as_dict()
        == first
    )
    later = site.statistics_report(
        programme.root, today=day + dt.timedelta(days=1), in_force=config_in_force
    )
    assert later.result.as_of != day
    programme.new_case()
    changed = site.statistics_report(programme.root, today=day, in_force=config_in_force)
    assert changed.commit != first["commit"]


def test_errors_keep_their_case_and_hint_across_processes() -> None:
    error = IntegrityError("damaged", hint="restore it", case_id="CP-7K2M9QX4", problems=["one"])
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is IntegrityError and str(again) == str(error)
    assert again.exit_code == error.exit_code


def test_a_forked_worker_answers_from_what_its_parent_had() -> None:
    """`pool.Forked` runs beside its parent, on what the parent had loaded (nothing is sent
    to it), and its answer or error comes back whole."""
    loaded = {"cases": list(range(100_000))}
    worker = pool.Forked(lambda: (os.getpid(), sum(loaded["cases"])))
    child, total = worker.result()
    assert child != os.getpid() and total == sum(range(100_000))

    def refuse() -> None:
        raise IntegrityError("damaged", case_id="CP-7K2M9QX4", hint="restore it")

    with pytest.raises(IntegrityError, match="damaged") as caught:
        pool.Forked(refuse).result()
    assert caught.value.case_id == "CP-7K2M9QX4"


def test_validation_on_every_core_agrees_with_one_process(
    programme: Programme, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = [programme.new_case() for _ in range(3)]
    path = programme.root / ids.record_path(cases[1])
    path.write_text(path.read_text().replace("version: 1", "version: 2"))
    identities = programme.identities("pm-001")
    serial = programme.repo().validate(identities, [])
    monkeypatch.setattr(store, "POOL_FROM", 1)
    pooled = programme.repo().validate(identities, [])
    assert [(r.case_id, r.ok, r.opened, r.exit_code) for r in pooled] == [
        (r.case_id, r.ok, r.opened, r.exit_code) for r in serial
    ]
    assert [r.ok for r in pooled].count(False) == 1
    found = programme.repo().find(identities, "CANARY")
    assert set(found) == set(cases) - {cases[1]}


def test_head_is_read_from_the_ref_file_and_from_git_when_packed(programme: Programme) -> None:
    git = Git.discover(programme.root)
    loose = git.head()
    programme.git("pack-refs", "--all")
    assert not (git.git_dir / "refs" / "heads" / "main").exists()
    assert Git.discover(programme.root).head() == loose


def test_a_remembered_configuration_spares_the_yaml_parser(programme: Programme) -> None:
    """Commands that read no form (list, move without --from) start without PyYAML once
    the configuration is remembered: a tenth of a move's time; and a keyless read of
    remembered open fields, which validates nothing, without the schema validator."""
    programme.new_case()
    listed(programme)
    script = (
        "import sys\nfrom cmgit import cli\nsys.argv = ['cmgit', 'list']\n"
        "try:\n    cli.cli(prog_name='cmgit')\nexcept SystemExit:\n    pass\n"
        "print('yaml' in sys.modules or 'jsonschema_rs' in sys.modules, "
        "file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=programme.root,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "CMGIT_TODAY": TODAY},
    )
    assert done.stderr.strip().splitlines()[-1] == "False", done.stderr


@pytest.mark.parametrize("list_all_from", [0, 10_000], ids=["first-run", "per-folder"])
def test_a_fifo_in_place_of_a_record_does_not_stall_a_read(
    programme: Programme, monkeypatch: pytest.MonkeyPatch, list_all_from: int
) -> None:
    """Opening a FIFO waits for a writer: the checked-out files are opened without waiting
    and used only when regular; the committed record is read from git instead."""
    case_id = programme.new_case()
    committed = listed(programme)
    shutil.rmtree(programme.root / CACHE)
    path = programme.root / ids.record_path(case_id)
    path.unlink()
    os.mkfifo(path)
    stray = path.with_name("CP-ZZZZZZZZ.yaml")
    os.mkfifo(stray)
    monkeypatch.setattr(caches, "LIST_ALL_FROM", list_all_from)
    monkeypatch.setattr(pool, "workers", lambda: 1)  # in this process, where the alarm rings
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the read waited on a FIFO"))
    signal.alarm(20)
    try:
        assert listed(programme) == committed
    finally:
        signal.alarm(0)


def test_state_histories_tell_what_the_commits_tell(programme: Programme) -> None:
    """Statistics read each case's state history from its open fields, not git's history:
    both tell the same changes of state, a reopened case's included."""
    for destination in ("registered", "case_planning", "closed_consent_declined", "reopened"):
        programme.walk(destination)
    source = site.open_source(programme.root, in_force=config_in_force)
    assert source.keeps_state_history

    def by_case(changes: list[stats.Change]) -> list[list[tuple[object, ...]]]:
        cases: dict[str, list[tuple[object, ...]]] = {}
        for change in changes:
            cases.setdefault(change.case, []).append((change.day, change.source, change.target))
        return sorted(cases.values())

    told = by_case(source.changes())
    assert told == by_case(source.logged_changes())
    assert len(told) == 4 and max(len(steps) for steps in told) >= 8


def test_imported_cases_are_in_the_logged_changes_too(programme: Programme, tmp_path: Path) -> None:
    """An `import` commit makes no `new` or `move` of each case: where the statistics read
    git's history (a schema that keeps no state history), an imported case still counts,
    in its one state since its state_since, as its state history tells."""
    programme.walk("registered")
    other = build_programme(tmp_path / "exporting")  # another programme, the same staff ids
    other.walk("case_planning")
    sealed = tmp_path / "cases.csv.age"
    receiver = programme.repo().registry.get("pm-001").recipient
    made = other.cli("export", "-o", str(sealed), "--recipient", receiver, as_="pm-001")
    assert made.exit_code == 0, made.output
    assert programme.cli("import", str(sealed), as_="pm-001").exit_code == 0
    source = site.open_source(programme.root, in_force=config_in_force)

    def by_case(changes: list[stats.Change]) -> list[list[tuple[object, ...]]]:
        cases: dict[str, list[tuple[object, ...]]] = {}
        for change in changes:
            cases.setdefault(change.case, []).append((change.day, change.source, change.target))
        return sorted(cases.values())

    told = by_case(source.changes())
    assert len(told) == 2 and [(None, "case_planning")] in [[s[1:] for s in c] for c in told]
    assert told == by_case(source.logged_changes())
