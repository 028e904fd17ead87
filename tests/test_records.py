"""The record file format: canonical, one field a line, bound to its sealed block."""

from __future__ import annotations

import json

import pytest

from cmgit import records
from cmgit.errors import IntegrityError, ParseError
from cmgit.records import Record

ORDER = ("case_id", "version", "state", "team", "registered_on", "risk_level", "immediate_risk")
ARMOR = "-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n-----END AGE ENCRYPTED FILE-----\n"


def open_fields(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "case_id": "CP-7K2M9QX4",
        "version": 3,
        "state": "assessment",
        "team": "north",
        "registered_on": "2026-01-02",
        "risk_level": None,
        "immediate_risk": False,
    }
    base.update(changes)
    return base


def test_file_is_canonical_and_round_trips() -> None:
    data = records.render_file(open_fields(), ORDER, ARMOR)
    text = data.decode()
    assert text.splitlines()[:7] == [
        "case_id: CP-7K2M9QX4",
        "version: 3",
        "state: assessment",
        "team: north",
        'registered_on: "2026-01-02"',
        "risk_level: null",
        "immediate_risk: false",
    ]
    assert "sealed: |\n  -----BEGIN AGE ENCRYPTED FILE-----\n" in text
    assert records.parse_file(data, ORDER) == (open_fields(), ARMOR)


def test_one_open_field_change_is_a_one_line_diff() -> None:
    before = records.render_file(open_fields(), ORDER, ARMOR).decode().splitlines()
    after = records.render_file(open_fields(state="case_planning"), ORDER, ARMOR).decode()
    changed = [pair for pair in zip(before, after.splitlines(), strict=True) if pair[0] != pair[1]]
    assert changed == [("state: assessment", "state: case_planning")]


def test_a_long_state_history_is_read_by_keyless_commands() -> None:
    """The open fields are read from the head of the file; a case that has made hundreds
    of moves has a state history longer than that head, and is read whole all the same."""
    order = (*ORDER, "state_history")
    history = [f"2026-01-{day % 28 + 1:02d} assessment" for day in range(600)]
    fields = open_fields(state_history=history)
    data = records.render_file(fields, order, ARMOR)
    assert len(data.split(b"\n")[len(ORDER)]) > 4096 + 256 * len(order)
    assert records.parse_open_fields(data, order) == fields
    assert records.parse_file(data, order) == (fields, ARMOR)


@pytest.mark.parametrize(
    "value",
    [
        "NO",
        "yes",
        "0123",
        "1.10",
        "2026-01-02",
        "null",
        "~",
        "a: b",
        "CANARY-NAME-7f3a \u00e9",
        " lead",
        "",
    ],
)
def test_ambiguous_strings_are_quoted_and_survive(value: str) -> None:
    data = records.render_file(open_fields(team=value), ORDER, ARMOR)
    assert records.parse_file(data, ORDER)[0]["team"] == value


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t.replace("version: 3", "version: 03"),
        lambda t: t.replace("state: assessment", "state: 'assessment'"),
        lambda t: t.replace("\n", "\r\n"),
        lambda t: t.replace("team: north\n", "team: north  \n"),
        lambda t: "# comment\n" + t,
        lambda t: t + "extra: 1\n",
        lambda t: t.replace("sealed: |", "sealed: |-"),
    ],
)
def test_anything_not_canonical_is_refused(mutate: object) -> None:
    text = records.render_file(open_fields(), ORDER, ARMOR).decode()
    bad = mutate(text).encode()  # type: ignore[operator]
    with pytest.raises((ParseError, IntegrityError)):
        records.parse_file(bad, ORDER)


def test_non_ascii_and_truncation_are_parse_errors() -> None:
    data = records.render_file(open_fields(), ORDER, ARMOR)
    with pytest.raises(ParseError):
        records.parse_file(data.replace(b"north", b"n\xc3\xb6rth"), ORDER)
    for cut in range(0, len(data) - 1, 7):
        with pytest.raises((ParseError, IntegrityError)):
            records.parse_file(data[:cut], ORDER)


def test_payload_binds_case_version_and_open_fields() -> None:
    record = Record(open_fields(), {"note": [{"text": "CANARY-NOTE-1"}]})
    payload = records.parse_payload(records.seal_payload(record, "ab" * 20))
    records.check_binding("CP-7K2M9QX4", record.open, payload)
    assert payload.prev_blob == "ab" * 20
    with pytest.raises(IntegrityError, match="another case"):
        records.check_binding("CP-00000000", record.open, payload)
    with pytest.raises(IntegrityError, match="digest"):
        records.check_binding("CP-7K2M9QX4", open_fields(state="closed"), payload)
    with pytest.raises(IntegrityError, match="version"):
        records.check_binding("CP-7K2M9QX4", open_fields(version=2), payload)


def test_padding_hides_narrative_length() -> None:
    short = Record(open_fields(), {"note": [{"text": "x" * 10}]})
    long = Record(open_fields(), {"note": [{"text": "x" * 3000}]})
    assert len(records.seal_payload(short, None)) == len(records.seal_payload(long, None)) == 4096
    assert records.bucket_size(4097) == 8192


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[]",
        b'{"cmgit_record": 1}',
        b"{" * 100000,
        b"\xff",
        json.dumps(
            {
                "cmgit_record": 2,
                "case_id": "x",
                "version": 1,
                "open_digest": "",
                "prev_blob": None,
                "forms": {},
            }
        ).encode(),
    ],
)
def test_bad_payloads_are_integrity_errors(data: bytes) -> None:
    with pytest.raises(IntegrityError):
        records.parse_payload(data)
