"""`cmgit retention due` and `cmgit privacy` on a real repository: keyless, no personal
data in their output, and open_date_precision applied when a record is written."""

from __future__ import annotations

import datetime as dt
import json

from .conftest import CANARY, Programme, form

PM = "pm-001"


def closed_case(programme: Programme) -> tuple[str, dt.date]:
    """A case closed (consent declined) by its supervisor, and the day it was closed."""
    case_id = programme.walk("closed_consent_declined")
    rows = json.loads(programme.cli("list", "--json", as_=None).stdout)
    (closed_on,) = [r["closed_on"] for r in rows if r["case_id"] == case_id]
    return case_id, dt.date.fromisoformat(closed_on)


def test_retention_due_says_how_to_set_an_unset_period(programme: Programme) -> None:
    closed_case(programme)
    before = programme.state()
    text = programme.cli("retention", "due", as_=None)
    assert text.exit_code == 0, text.output
    assert "retention_period_months is not set" in text.stdout
    assert "cmgit settings set retention_period_months MONTHS" in text.stdout
    data = json.loads(programme.cli("retention", "due", "--json", as_=None).stdout)
    assert data == {"as_of": "2026-04-01", "retention_period_months": None, "cases": []}
    assert programme.state() == before


def test_retention_due_lists_the_cases_past_their_period(programme: Programme) -> None:
    case_id, closed_on = closed_case(programme)
    open_case = programme.new_case()
    assert programme.cli("settings", "set", "retention_period_months", "12", as_=PM).exit_code == 0
    ends = closed_on.replace(year=closed_on.year + 1)

    def due(as_of: dt.date) -> dict:  # type: ignore[type-arg]
        result = programme.cli("retention", "due", "--json", "--as-of", as_of.isoformat(), as_=None)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    assert due(ends)["cases"] == []
    later = due(ends + dt.timedelta(days=3))
    assert later["retention_period_months"] == 12
    assert later["cases"] == [
        {
            "case_id": case_id,
            "closed_on": closed_on.isoformat(),
            "retention_ends_on": ends.isoformat(),
            "days_past": 3,
        }
    ]
    text = programme.cli("retention", "due", "--as-of", (ends + dt.timedelta(days=1)).isoformat())
    assert text.exit_code == 0, text.output
    assert case_id in text.stdout and "1 day" in text.stdout and open_case not in text.stdout
    assert CANARY not in text.output
    none = programme.cli("retention", "due", as_=None)  # today: nothing is due yet
    assert "No closed case is past its retention period (12 months)" in none.stdout


def test_retention_due_refuses_a_date_it_cannot_read(programme: Programme) -> None:
    bad = programme.cli("retention", "due", "--as-of", "next week", as_=None)
    assert bad.exit_code == 2
    assert "--as-of must be a date such as 2026-03-01" in bad.output


def test_privacy_counts_without_a_key_and_names_no_case(programme: Programme) -> None:
    cases = [programme.walk("implementation", seed=n) for n in (1, 2, 3)]
    cases.append(programme.new_case())
    before = programme.state()
    text = programme.cli("privacy", as_=None)
    assert text.exit_code == 0, text.output
    assert "4 cases, grouped on team, sex, age_band, separation_status" in text.stdout
    assert "with open_date_precision: month (identified_on kept to the month)" in text.stdout
    assert "without the other dates, with identified_on:" in text.stdout
    assert "Without dates:" in text.stdout and "With one date each:" in text.stdout
    for case_id in cases:
        assert case_id not in text.output
    assert CANARY not in text.output
    data = json.loads(programme.cli("privacy", "--json", as_=None).stdout)
    assert data["cases"] == 4 and data["threshold"] == 5
    assert data["stored"]["small"] == 4  # every group is smaller than 5
    assert "singled_out" not in data
    assert "state_history" in data["dates"]
    assert CANARY not in json.dumps(data)
    # The new case is alone on the day it was identified; the walks share theirs.
    with_ids = json.loads(programme.cli("privacy", "--json", "--list", as_=None).stdout)
    assert cases[-1] in with_ids["singled_out"]
    assert len(with_ids["singled_out"]) == data["stored"]["unique"]
    listed = programme.cli("privacy", "--list", as_=None)
    assert all(case_id in listed.stdout for case_id in with_ids["singled_out"])
    assert programme.state() == before


def test_privacy_of_an_empty_repository(programme: Programme) -> None:
    data = json.loads(programme.cli("privacy", "--json", as_=None).stdout)
    assert data["cases"] == 0 and data["stored"]["unique"] == 0
    assert programme.cli("privacy", as_=None).exit_code == 0


def test_open_date_precision_month_keeps_identified_on_to_the_month(
    programme: Programme,
) -> None:
    day = programme.new_case()
    assert programme.cli("settings", "set", "open_date_precision", "month", as_=PM).exit_code == 0
    month = programme.new_case()
    rows = {r["case_id"]: r for r in json.loads(programme.cli("list", "--json").stdout)}
    assert rows[day]["identified_on"] == "2026-03-02"  # written before: as it was
    assert rows[month]["identified_on"] == "2026-03-01"
    # The dates a procedure reads stay to the day.
    assert rows[month]["state_since"] == "2026-04-01"
    assert rows[month]["state_history"] == ["2026-04-01 identified"]
    # A change of the case written earlier keeps its identification date to the month too.
    recorded = programme.cli(
        "record", day, "note", "--from", programme.form_file("note", form("note"))
    )
    assert recorded.exit_code == 0, recorded.output
    rows = {r["case_id"]: r for r in json.loads(programme.cli("list", "--json").stdout)}
    assert rows[day]["identified_on"] == "2026-03-01"
    walked = programme.walk("implementation")  # moves, guards and due dates as before
    rows = {r["case_id"]: r for r in json.loads(programme.cli("list", "--json").stdout)}
    assert rows[walked]["identified_on"].endswith("-01")
    assert rows[walked]["next_follow_up_due"] is not None
    # The sealed form keeps the day; the audit still verifies every commit.
    shown = json.loads(programme.cli("show", month, "--json").stdout)
    assert shown["identification"]["identified_on"] == "2026-03-02"
    audit = programme.cli("audit", "--json", as_=None)
    assert audit.exit_code == 0, audit.output
    bad = programme.cli("settings", "set", "open_date_precision", "week", as_=PM)
    assert bad.exit_code != 0
