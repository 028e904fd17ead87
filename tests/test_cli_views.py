"""Keyless views: the workflow table, list, due and log read the data and history only."""

from __future__ import annotations

import json

from .conftest import Programme


def test_workflow_command_prints_the_data(programme: Programme) -> None:
    table = programme.cli("workflow", as_=None)
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["id", "from", "to", "by", "guards", "reasons"]
    assert any(line.startswith("T09 ") and "G16" in line for line in lines)
    rows = json.loads(programme.cli("workflow", "--json", as_=None).stdout)
    assert {r["id"] for r in rows} >= {"T01", "T26"}
    guards = json.loads(programme.cli("workflow", "--guards", "--json", as_=None).stdout)
    assert {"GA", "GB", "GD", "G01", "G35"} <= {g["code"] for g in guards}


def test_list_mine_and_filters(programme: Programme) -> None:
    mine = programme.new_case()
    other = programme.new_case(as_="cw-north-2")
    rows = json.loads(programme.cli("list", "--mine", "--json").stdout)
    assert [r["case_id"] for r in rows] == [mine]
    rows = json.loads(programme.cli("list", "--caseworker", "cw-north-2", "--json",
                                    as_=None).stdout)
    assert [r["case_id"] for r in rows] == [other]
    assert json.loads(programme.cli("list", "--team", "south", "--json", as_=None).stdout) == []
    bad = programme.cli("list", "--state", "nowhere", as_=None)
    assert bad.exit_code == 2


def test_due_and_log_after_a_journey(programme: Programme) -> None:
    case_id = programme.walk("implementation")
    due = json.loads(programme.cli("due", "--json", "--within", "400", as_=None).stdout)
    kinds = {(r["case_id"], r["kind"]) for r in due}
    assert (case_id, "follow_up") in kinds and (case_id, "review") in kinds
    log = json.loads(programme.cli("log", case_id, "--json", as_=None).stdout)
    path = [(r["from"], r["to"]) for r in log if r["action"] == "move"]
    assert path == [("identified", "registered"), ("registered", "assessment"),
                    ("assessment", "case_planning"), ("case_planning", "implementation")]
    approval = next(r for r in log if r["to"] == "implementation")
    assert approval["actor"] == "sv-north" and approval["role"] == "supervisor"
    assert approval["transition"] == "T09"
    text = programme.cli("log", case_id, as_=None).stdout
    assert "identified -> registered" in text and "CANARY" not in text
