"""`cmgit report monthly` end to end, on a real repository with real cases whose sealed
forms carry CANARY strings: the public version needs no key, names no case, staff member
or child and is byte-identical when rebuilt; the internal one opens only with a
programme manager's identity, and to the same bytes when rebuilt."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cmgit import crypto
from cmgit.errors import NotARecipient

from .conftest import STAFF, Programme

DESTINATIONS = ("registered", "implementation", "closed_death", "post_closure_monitoring")
MONTH = "2026-03"  # the tests' today is 2026-04-01
CASE_ID = re.compile(r"[A-Z]{2,5}-[0-9A-HJKMNP-TV-Z]{8}")
PUBLIC = (f"monthly-{MONTH}-public.json", f"monthly-{MONTH}-public.md")
INTERNAL = f"monthly-{MONTH}-internal.json.age"


@pytest.fixture
def walked(programme: Programme) -> tuple[Programme, list[str]]:
    cases = [programme.walk(dest, seed=n + 1) for n, dest in enumerate(DESTINATIONS)]
    return programme, cases


def no_personal_data(text: str, cases: list[str]) -> None:
    assert "canary" not in text.lower()
    assert not CASE_ID.search(text)
    for case_id in cases:
        assert case_id not in text
    for staff_id, _, _ in STAFF:
        assert staff_id not in text


def test_public_version_needs_no_key_and_is_byte_identical_when_rebuilt(
    walked: tuple[Programme, list[str]], tmp_path: Path
) -> None:
    p, cases = walked
    before = p.state()
    first, second = tmp_path / "one", tmp_path / "two"
    for out in (first, second):
        result = p.cli("report", "monthly", MONTH, "-o", str(out), "--public", as_=None)
        assert result.exit_code == 0, result.output
    assert sorted(f.name for f in first.iterdir()) == sorted(PUBLIC)
    for name in PUBLIC:
        assert (first / name).read_bytes() == (second / name).read_bytes()
        no_personal_data((first / name).read_text(encoding="utf-8"), cases)
    doc = json.loads((first / PUBLIC[0]).read_text(encoding="utf-8"))
    assert doc["month"] == MONTH and doc["version"] == "public"
    assert doc["commit"] == before[0]
    assert doc["small_programme"] is True and doc["tables"] == []  # four cases only
    assert p.state() == before


def test_internal_version_opens_only_for_programme_managers(
    walked: tuple[Programme, list[str]], tmp_path: Path
) -> None:
    p, cases = walked
    secret, recipient = crypto.generate_identity()
    crypto.write_identity_file(p.key("pm-002"), secret, recipient)
    added = p.cli(
        "staff", "add", "pm-002", "--role", "programme_manager", "--team", "programme",
        "--recipient", recipient, as_="pm-001",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    before = p.state()
    first, second = tmp_path / "one", tmp_path / "two"
    for out in (first, second):
        result = p.cli("report", "monthly", MONTH, "-o", str(out), as_="pm-001")
        assert result.exit_code == 0, result.output
        assert "sealed to 2 programme manager(s)" in result.output
    armored = [(out / INTERNAL).read_text() for out in (first, second)]
    assert armored[0] != armored[1]  # sealed afresh each time
    opened = [crypto.open_sealed(a, p.identities("pm-002")) for a in armored]
    assert opened[0] == opened[1]
    assert crypto.open_sealed(armored[0], p.identities("pm-001")) == opened[0]
    for staff_id, role, _ in STAFF:
        if role != "programme_manager":
            with pytest.raises(NotARecipient):
                crypto.open_sealed(armored[0], p.identities(staff_id))
    text = opened[0].decode()
    no_personal_data(text, cases)
    doc = json.loads(text)
    assert doc["version"] == "internal" and doc["commit"] == before[0]
    assert doc["unreadable_cases"] == 0
    tables = {t["id"]: t for t in doc["tables"]}
    annex = tables["annex5_concern_sex_risk"]
    assert annex["dimensions"] == ["concern category", "sex", "risk level"]
    assert doc["active_cases"] >= 3
    for name in ("referrals_by_service_and_status", "own_and_referred", "bia_bid", "ftr_outcomes"):
        assert name in tables
    for name in PUBLIC:
        assert (first / name).read_bytes() == (second / name).read_bytes()
    assert p.state() == before


def test_others_are_refused_the_internal_version_and_nothing_is_written(
    walked: tuple[Programme, list[str]], tmp_path: Path
) -> None:
    p, _ = walked
    before = p.state()
    out = tmp_path / "out"
    refused = p.cli("report", "monthly", MONTH, "-o", str(out), as_="sv-north")
    assert refused.exit_code == 4, refused.output
    assert "programme_manager" in refused.output and "--public" in refused.output
    keyless = p.cli("report", "monthly", MONTH, "-o", str(out), as_=None)
    assert keyless.exit_code == 5, keyless.output
    assert "--public" in keyless.output
    assert not out.exists()
    public = p.cli("report", "monthly", MONTH, "-o", str(out), "--public", "--json", as_="sv-north")
    assert public.exit_code == 0, public.output
    assert json.loads(public.output)["files"] == [str(out / name) for name in PUBLIC]
    assert p.state() == before


@pytest.mark.parametrize(
    ("month", "message"),
    [("2026-04", "has not ended yet"), ("2026-4", "YYYY-MM"), ("april", "YYYY-MM")],
)
def test_a_month_that_has_not_ended_or_is_malformed_is_a_usage_error(
    programme: Programme, tmp_path: Path, month: str, message: str
) -> None:
    out = tmp_path / "out"
    result = programme.cli("report", "monthly", month, "-o", str(out), "--public", as_=None)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()
