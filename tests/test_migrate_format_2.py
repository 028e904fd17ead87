"""Acceptance (#17): a programme made before record format 2, brought to it with `cmgit
migrate`, audits clean, and every case shows what it showed before. A small demo
programme (cases walked through the real transitions, signed commits, real age keys),
made with the template of a cmgit from before format 2 shipped."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from cmgit import demo, entries, ids, records
from cmgit.keyring import ref
from cmgit.store import Repository, setup

from .conftest import CANARY, TODAY, Programme, format_1_template
from .test_audit import audit

CASES = 24
CHANGED = ("version", "record_format")  # what the migration changes of a case shown


@pytest.fixture
def format_1_demo(tmp_path: Path) -> Programme:
    """A demo programme in record format 1: each record one file with a sealed block."""
    old = format_1_template(tmp_path / "template")
    target = tmp_path / "demo"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(setup, "template_root", lambda: old)
        demo.build(target, cases=CASES, seed=17, today=dt.date.fromisoformat(TODAY))
    work = tmp_path / "work"
    work.mkdir()
    return Programme(target / "cases", target / "identities", work)


def case_ids(programme: Programme) -> list[str]:
    return sorted(path.stem for path in (programme.root / ids.RECORDS_DIR).glob("*/*.yaml"))


def shown(programme: Programme, case_id: str) -> dict[str, object]:
    result = programme.cli("show", case_id, "--json", as_="pm-001")
    assert result.exit_code == 0, result.output
    doc: dict[str, object] = json.loads(result.stdout)
    return {k: v for k, v in doc.items() if k not in CHANGED}


def test_a_format_1_demo_migrated_audits_clean_and_every_case_shows_the_same(
    format_1_demo: Programme,
) -> None:
    programme = format_1_demo
    cases = case_ids(programme)
    assert len(cases) == CASES
    assert all(
        records.has_sealed_block((programme.root / ids.record_path(c)).read_bytes()) for c in cases
    )
    before = {case_id: shown(programme, case_id) for case_id in cases}
    assert all(CANARY in json.dumps(doc) for doc in before.values())  # the forms, opened
    assert len({doc["state"] for doc in before.values()}) >= 5  # cases all along the way

    signing = {"CMGIT_SIGNING_KEY": str(programme.keys / "pm-001.ssh")}
    made = programme.cli("migrate", as_="pm-001", env=signing)
    assert made.exit_code == 0, made.output
    assert f"Migrated {CASES} record(s) to format 3 (0003-sealed-entries)" in made.stdout
    assert programme.git("status", "--porcelain") == ""

    code, report = audit(programme)
    assert code == 0 and report["ok"], report["violations"]
    assert {case_id: shown(programme, case_id) for case_id in cases} == before

    repo = Repository.open(programme.root)
    for case_id in cases:
        path = ids.record_path(case_id)
        assert not records.has_sealed_block((programme.root / path).read_bytes()), case_id
        size = int(programme.git("cat-file", "-s", f"HEAD:{path}"))
        assert size < entries.AUDITOR_BLOB_LIMIT, case_id
        listing = programme.git(
            "ls-tree", "--name-only", "HEAD", entries.entries_dir(case_id) + "/"
        )
        named = [entries.parse_entry_path(p) for p in listing.split()]
        assert named and all(n is not None and n[0] == case_id for n in named), case_id
        assert "staff.age" in ref.read_case(repo.git, case_id), case_id
