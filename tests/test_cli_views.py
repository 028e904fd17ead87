"""Keyless views: the workflow table, list, due and log read the data and history only."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

from cmgit import ids

from .conftest import TODAY, Programme


def test_workflow_command_prints_the_data(programme: Programme) -> None:
    table = programme.cli("workflow", as_=None)
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert max(map(len, lines)) <= 100
    at = lines.index("T09   case_planning -> implementation")
    assert lines[at + 1] == (
        "      by supervisor, programme_manager; guards G14 G15 G17 G18 G19; four eyes G16"
    )  # the four-eyes guard is not repeated among the guards
    assert "T26   any open state or post_closure_monitoring -> closed" in lines
    assert "turned_18 (G24)" in table.stdout
    guards_text = programme.cli("workflow", "--guards", as_=None).stdout
    assert max(map(len, guards_text.splitlines())) <= 100
    assert guards_text.startswith("GA    hard     The person acting")
    rows = json.loads(programme.cli("workflow", "--json", as_=None).stdout)
    assert {r["id"] for r in rows} >= {"T01", "T26"}
    guards = json.loads(programme.cli("workflow", "--guards", "--json", as_=None).stdout)
    assert {"GA", "GB", "GD", "G01", "G35"} <= {g["code"] for g in guards}


def test_list_mine_and_filters(programme: Programme) -> None:
    mine = programme.new_case()
    other = programme.new_case(as_="cw-north-2")
    rows = json.loads(programme.cli("list", "--mine", "--json").stdout)
    assert [r["case_id"] for r in rows] == [mine]
    rows = json.loads(
        programme.cli("list", "--caseworker", "cw-north-2", "--json", as_=None).stdout
    )
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
    assert path == [
        ("identified", "registered"),
        ("registered", "assessment"),
        ("assessment", "case_planning"),
        ("case_planning", "implementation"),
    ]
    approval = next(r for r in log if r["to"] == "implementation")
    assert approval["actor"] == "sv-north" and approval["role"] == "supervisor"
    assert approval["transition"] == "T09"
    text = programme.cli("log", case_id, as_=None).stdout
    assert "identified -> registered" in text and "CANARY" not in text


def test_due_filters_by_team_caseworker_mine_and_risk(programme: Programme) -> None:
    mine = programme.walk("implementation")
    other = programme.walk("implementation", worker="cw-north-2", seed=2)

    def due(*args: str, as_: str | None = None) -> set[str]:
        result = programme.cli("due", "--json", "--within", "400", *args, as_=as_)
        assert result.exit_code == 0, result.output
        return {r["case_id"] for r in json.loads(result.stdout)}

    assert due() == {mine, other}
    assert due("--mine", as_="cw-north-1") == {mine}
    assert due("--caseworker", "cw-north-2") == {other}
    assert due("--team", "north") == {mine, other} and due("--team", "south") == set()
    risks = {r["case_id"]: r["risk_level"] for r in json.loads(
        programme.cli("due", "--json", "--within", "400", as_=None).stdout
    )}  # fmt: skip
    level = risks[mine]
    assert mine in due("--risk", level)
    assert due("--risk", level) == {c for c, r in risks.items() if r == level}
    others = [r for r in ("high", "medium", "low") if r != level]
    assert mine not in due(*(word for r in others for word in ("--risk", r)))
    assert programme.cli("due", "--risk", "extreme", as_=None).exit_code == 2


def test_due_says_one_day_not_one_days(programme: Programme) -> None:
    case_id = programme.walk("implementation")
    rows = json.loads(programme.cli("due", "--json", "--within", "400", as_=None).stdout)
    row = next(r for r in rows if r["case_id"] == case_id and r["kind"] == "follow_up")
    due_on = dt.date.fromisoformat(row["due_on"])
    for day, said in (
        (due_on + dt.timedelta(days=1), "1 day overdue"),
        (due_on - dt.timedelta(days=1), "in 1 day"),
    ):
        text = programme.cli("due", "--within", "400", as_=None, today=day.isoformat()).stdout
        line = next(line for line in text.splitlines() if case_id in line and "follow_up" in line)
        assert said in line and "1 days" not in line


def test_a_date_field_holding_a_list_is_no_date(programme: Programme) -> None:
    """A record not written by cmgit may hold a list where a due date belongs: `due` and
    `list --overdue` read it as no date, instead of failing on it."""
    case_id = programme.new_case()
    path = programme.root / ids.record_path(case_id)
    text = path.read_text()
    assert "\nnext_follow_up_due: null\n" in text
    path.write_text(
        text.replace("\nnext_follow_up_due: null\n", '\nnext_follow_up_due: ["2020-01-01"]\n')
    )
    programme.git("-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", "by hand")
    due = programme.cli("due", "--json", "--within", "10000", as_=None)
    assert due.exit_code == 0, due.output
    assert (case_id, "follow_up") not in {(r["case_id"], r["kind"]) for r in json.loads(due.stdout)}
    overdue = programme.cli("list", "--overdue", "--json", as_=None)
    assert overdue.exit_code == 0 and json.loads(overdue.stdout) == []
    assert case_id in programme.cli("list", as_=None).stdout


def test_the_command_line_flushes_its_output_and_keeps_its_exit_code(programme: Programme) -> None:
    """`cmgit` leaves without tearing the interpreter down: what it printed still arrives
    whole, and the exit code is the command's."""
    cases = sorted(programme.new_case() for _ in range(3))
    env = {**os.environ, "CMGIT_TODAY": TODAY}
    listed = subprocess.run(
        [sys.executable, "-m", "cmgit.cli", "-C", str(programme.root), "list"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["case", *cases]
    assert listed.stderr == "3 case(s)\n"
    bad = subprocess.run(
        [sys.executable, "-m", "cmgit.cli", "-C", str(programme.root), "log", "not-an-id"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("Error: ") and "Traceback" not in bad.stderr


def test_a_reader_that_leaves_ends_the_command_quietly(programme: Programme) -> None:
    """`cmgit workflow | head -1`: once the reader has gone, cmgit ends as a pipe's writer
    does (141), without reporting an error of its own."""
    reader, writer = os.pipe()
    os.close(reader)  # gone before cmgit writes a byte
    done = subprocess.run(
        [sys.executable, "-m", "cmgit.cli", "-C", str(programme.root), "workflow"],
        stdout=writer,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CMGIT_TODAY": TODAY},
        check=False,
    )
    os.close(writer)
    assert (done.returncode, done.stderr) == (141, "")
