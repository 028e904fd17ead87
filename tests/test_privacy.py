"""The single-out count and the open dates kept to the month: pure, from open values."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cmgit import privacy
from cmgit.schema import CASE, SchemaSet

from .conftest import FIXTURES

SCHEMAS = SchemaSet.load(FIXTURES.parent.parent / "schemas")
PROPERTIES = SCHEMAS.case_properties
ORDER = ("case_id", "team", "sex", "age_band", "separation_status", "identified_on", "closed_on")
# The case schema's open dates, in its order: read from the schema, so this list is what
# the report groups on.
OPEN_DATES = (
    "identified_on",
    "registered_on",
    "state_since",
    "state_history",
    "next_follow_up_due",
    "next_review_due",
    "closed_on",
)


def test_the_open_dates_are_read_from_the_case_schema() -> None:
    assert CASE in SCHEMAS.schemas
    assert privacy.open_date_fields(PROPERTIES) == OPEN_DATES
    assert privacy.coarsenable(PROPERTIES) == ("identified_on",)
    # A programme's own open date counts; a sealed one does not.
    own = {
        **PROPERTIES,
        "visited_on": {"$ref": "urn:cmgit:schema:common#/$defs/date", "x-cmgit": "open"},
        "born_on": {"$ref": "urn:cmgit:schema:common#/$defs/date", "x-cmgit": "sealed"},
    }
    assert privacy.open_date_fields(own) == (*OPEN_DATES, "visited_on")
    assert privacy.coarsenable(own) == ("identified_on", "visited_on")


def test_no_date_a_procedure_reads_to_the_day_is_coarsened() -> None:
    """Guards, the follow-up clock, `due`, statistics, `retention due` and the audit read
    these dates to the day: if one of their sources names an open date, it must stay exact."""
    root = FIXTURES.parent.parent
    readers = [
        root / "cmgit" / name
        for name in ("guards.py", "stats.py", "retention.py", "store/views.py")
    ] + sorted((root / "cmgit" / "site").glob("*.py"))
    text = "\n".join(path.read_text() for path in readers)
    text += (root / "schemas" / "workflow.yaml").read_text()
    for name in privacy.coarsenable(PROPERTIES):
        assert name not in text, f"{name} is read by a procedure yet may be coarsened"


def test_to_month_keeps_a_valid_date_no_later_than_the_day() -> None:
    assert privacy.to_month("2026-03-17") == "2026-03-01"
    assert privacy.to_month("2026-03-17 registered") == "2026-03-01 registered"
    assert privacy.to_month(["2026-03-17 identified"]) == ["2026-03-01 identified"]
    assert privacy.to_month(None) is None
    assert privacy.to_month("not a date") == "not a date"


def test_apply_precision_follows_the_setting() -> None:
    fields = {"identified_on": "2026-03-17", "closed_on": "2026-03-17", "team": "north"}
    assert privacy.apply_precision(dict(fields), PROPERTIES, {}) == fields
    day = privacy.apply_precision(dict(fields), PROPERTIES, {"open_date_precision": "day"})
    assert day == fields
    month = privacy.apply_precision(dict(fields), PROPERTIES, {"open_date_precision": "month"})
    assert month == {**fields, "identified_on": "2026-03-01"}


def row(n: int, team: str, sex: str, band: str, day: str = "2026-03-17") -> tuple[Any, ...]:
    return (f"CP-{n:08d}", team, sex, band, "unaccompanied", day, None)


def test_single_out_counts_groups_and_names_the_unique_cases() -> None:
    rows = [
        row(1, "north", "female", "12_14"),
        row(2, "north", "female", "12_14"),
        row(3, "north", "male", "12_14"),
        row(4, "south", "male", "0_4", "2026-03-02"),
        row(5, "south", "male", "0_4", "2026-03-30"),
    ]
    report = privacy.single_out(rows, ORDER, PROPERTIES, threshold=2)
    assert report.quasi_identifiers == privacy.QUASI_IDENTIFIERS
    assert report.dates == ("identified_on", "closed_on")  # the dates the rows carry
    assert report.month_fields == ("identified_on",)
    assert (report.stored.groups, report.stored.unique, report.stored.small) == (4, 3, 3)
    assert report.singled_out == ("CP-00000003", "CP-00000004", "CP-00000005")
    # Kept to the month, cases 4 and 5 share March.
    assert (report.at_month.unique, report.at_month.small) == (1, 1)
    team = next(e for e in report.without_dates if e.fields == ("team",))
    assert (team.groups, team.unique, team.small) == (2, 0, 0)
    assert len(report.without_dates) == 15  # every combination of the four
    assert [e.fields[-1] for e in report.with_each_date] == ["identified_on", "closed_on"]
    (month,) = report.each_at_month  # identified_on, beside the four, kept to the month
    assert month.fields[-1] == "identified_on" and (month.unique, month.small) == (1, 1)
    assert "singled_out" not in report.as_dict()
    assert report.as_dict(with_ids=True)["singled_out"] == report.singled_out


def test_values_cmgit_did_not_write_are_counted_not_refused() -> None:
    rows = [(*row(1, "north", "female", "12_14")[:6], {"odd": 1}), row(2, "north", "x", "y")]
    report = privacy.single_out(rows, ORDER, PROPERTIES)
    assert report.stored.unique == 2 and report.stored.small == 2


VALUES = st.sampled_from(["a", "b", None])
DAYS = st.sampled_from(["2026-01-05", "2026-01-20", "2026-02-05", None])
ROWS = st.lists(st.tuples(VALUES, VALUES, VALUES, VALUES, DAYS, DAYS), max_size=40)


@given(ROWS, st.integers(min_value=2, max_value=8))
def test_the_numbers_add_up(values: list[tuple[Any, ...]], threshold: int) -> None:
    rows = [(f"CP-{n:08d}", *v) for n, v in enumerate(values)]
    report = privacy.single_out(rows, ORDER, PROPERTIES, threshold)
    assert report.cases == len(rows)
    # The groups, counted the slow way: every case with every case.
    fields = [ORDER.index(name) for name in report.stored.fields]
    sizes = [sum(all(r[i] == s[i] for i in fields) for s in rows) for r in rows]
    assert report.stored.unique == sizes.count(1) == len(report.singled_out)
    assert report.stored.small == sum(1 for size in sizes if size < threshold)
    assert report.stored.groups == len({tuple(r[i] for i in fields) for r in rows})
    for exposure in (report.stored, report.at_month, *report.without_dates):
        assert exposure.unique <= exposure.small <= report.cases
        assert exposure.groups <= report.cases and (exposure.groups > 0) == bool(rows)
    # Fewer fields, or coarser dates, never single out more cases.
    assert report.at_month.unique <= report.stored.unique
    for few, more in itertools.combinations(report.without_dates, 2):
        if set(few.fields) < set(more.fields):
            assert few.unique <= more.unique and few.groups <= more.groups
    for one in report.with_each_date:
        assert one.unique <= report.stored.unique
    day_alone = {e.fields: e for e in report.with_each_date}
    for coarse in report.each_at_month:
        assert coarse.unique <= day_alone[coarse.fields].unique
    # The sizes of the groups sum to the cases.
    keys = Counter(tuple(r[i] for i in fields) for r in rows)
    assert sum(keys.values()) == report.cases
