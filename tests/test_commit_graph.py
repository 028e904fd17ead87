"""git's commit-graph with changed-path filters: written by cmgit in bulk (init, sync,
about every 64th commit), so the history of one path reads only the commits that may
have touched it; and never trusted by the audit over the commits' own bytes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cmgit import history, ids

from .conftest import Programme, git
from .test_sync import in_office, offices


def bloom_statistics(root: Path, path: str) -> dict[str, int]:
    """What git's changed-path filters did for `git log -- PATH`: how many commits had
    no filter, and how many the filters ruled out without reading their trees."""
    trace = root / "trace.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_TRACE2_EVENT"] = str(trace)
    subprocess.run(
        ["git", "-C", str(root), "log", "--format=%H", "--", path],
        check=True,
        capture_output=True,
        env=env,
    )
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    trace.unlink()
    found = [e["value"] for e in events if e.get("category") == "bloom"]
    return found[-1] if found else {"filter_not_present": -1, "definitely_not": 0}


def test_sync_gives_a_plain_clone_changed_path_filters(
    programme: Programme, tmp_path: Path
) -> None:
    case_id = programme.new_case()
    programme.new_case()
    _, _, office = offices(programme, tmp_path)
    shutil.rmtree(office / ".git" / "objects" / "info" / "commit-graphs", ignore_errors=True)
    path = ids.record_path(case_id)
    assert bloom_statistics(office, path)["filter_not_present"] == -1  # none yet
    synced = in_office(programme, office, "sync")
    assert synced.exit_code == 0, synced.output
    stats = bloom_statistics(office, path)
    assert stats["filter_not_present"] == 0 and stats["definitely_not"] > 0
    log = in_office(programme, office, "log", case_id, "--json", as_=None)
    assert log.exit_code == 0 and json.loads(log.stdout)[0]["action"] == "new"


def test_a_commit_picked_by_its_id_adds_the_new_commits(
    programme: Programme, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (programme.root / ".git" / "objects" / "info" / "commit-graphs").is_dir()
    monkeypatch.setattr(history, "GRAPH_EVERY", 1)  # every commit is picked
    case_id = programme.new_case()
    stats = bloom_statistics(programme.root, ids.record_path(case_id))
    assert stats["filter_not_present"] == 0 and stats["definitely_not"] > 0


def test_audit_trusts_each_commit_not_a_doctored_commit_graph(
    programme: Programme, tmp_path: Path
) -> None:
    """A commit-graph is a local cache git reads parents from. One doctored to give the
    newest commit its grandparent as parent would hide the commit between from a walk;
    the audit compares each commit's own, hashed bytes and flags it."""
    programme.new_case()
    programme.new_case()
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--no-local", str(programme.root), str(clone))
    info = clone / ".git" / "objects" / "info"
    shutil.rmtree(info / "commit-graphs", ignore_errors=True)
    git(clone, "commit-graph", "write", "--reachable")  # one file, no layers
    head, _, grandparent = git(clone, "rev-list", "-3", "HEAD").split()
    _set_first_parent(info / "commit-graph", head, grandparent)
    # git's walks now believe it
    assert git(clone, "rev-list", "--parents", "-1", "HEAD").split() == [head, grandparent]
    result = programme.cli("-C", str(clone), "audit", "--full", "--json", as_=None)
    assert result.exit_code != 0
    found = json.loads(result.stdout)["violations"]
    assert {"commit": head, "rule": "headers"} in [
        {"commit": v["commit"], "rule": v["rule"]} for v in found
    ]


def _set_first_parent(graph: Path, commit: str, parent: str) -> None:
    """Rewrite ``commit``'s first parent in a one-file commit-graph (git's format: a
    header, a table of chunks, the sorted ids in OIDL, and per commit in CDAT its tree,
    the positions of two parents and its generation and time)."""
    data = bytearray(graph.read_bytes())
    assert data[:4] == b"CGPH"
    chunks = {}
    for n in range(data[6]):
        at = 8 + 12 * n
        chunks[bytes(data[at : at + 4])] = int.from_bytes(data[at + 4 : at + 12], "big")
    fanout = chunks[b"OIDF"] + 255 * 4
    count = int.from_bytes(data[fanout : fanout + 4], "big")  # commits in the graph
    start = chunks[b"OIDL"]
    oids = [data[start + 20 * i : start + 20 * (i + 1)].hex() for i in range(count)]
    entry = chunks[b"CDAT"] + 36 * oids.index(commit)
    data[entry + 20 : entry + 24] = oids.index(parent).to_bytes(4, "big")
    graph.write_bytes(bytes(data))
