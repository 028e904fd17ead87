"""Identifiers: the one case-ID pattern guards every path and git argument (hostile B11)."""

from __future__ import annotations

import pytest

from cmgit import ids
from cmgit.errors import BadCaseId, BadStaffId


@pytest.mark.parametrize("text", ["CP-7K2M9QX4", "ABCDE-00000000", "XY-ZZZZZZZZ"])
def test_good_case_ids(text: str) -> None:
    assert ids.check_case_id(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "../../.git/hooks/post-commit",
        "/etc/x",
        "CP-1/../x",
        "CP-7K2M9QX4\x00",
        "con",
        "CP-7K2M9QX4.",
        "CP-7K2M9QX4 ",
        "CP-7K2M9QX4\n",
        "C" * 300,
        "CP-7K2M9QXI",
        "CP-7K2M9QXL",
        "CP-7K2M9QXO",
        "CP-7K2M9QXU",
        "cp-7k2m9qx4",
        "--upload-pack=x",
        "-n",
        "CP-\u202e7K2M9QX4",
        "CP-7K2M9QX",
        "",
        None,
        5,
    ],
)
def test_bad_case_ids_are_usage_errors(text: object) -> None:
    with pytest.raises(BadCaseId) as info:
        ids.check_case_id(text)
    assert info.value.exit_code == 2


def test_new_case_id_uses_crockford_and_the_prefix() -> None:
    assert ids.new_case_id("CP", bytes(5)) == "CP-00000000"
    assert ids.new_case_id("CP", b"\xff" * 5) == "CP-ZZZZZZZZ"
    case_id = ids.new_case_id("ABC", b"\x12\x34\x56\x78\x9a")
    assert ids.check_case_id(case_id) == case_id


def test_record_path_fans_out_by_two_characters() -> None:
    assert ids.record_path("CP-7K2M9QX4") == "records/7K/CP-7K2M9QX4.yaml"
    assert ids.case_id_from_path("records/7K/CP-7K2M9QX4.yaml") == "CP-7K2M9QX4"
    assert ids.case_id_from_path("records/7X/CP-7K2M9QX4.yaml") is None
    assert ids.case_id_from_path("records/README.md") is None
    assert ids.case_id_from_path("records/.gitkeep") is None


@pytest.mark.parametrize("text", ["A", "-x", "x", "sw_1", "Sw-1", "a" * 33, "a b"])
def test_bad_staff_ids(text: str) -> None:
    with pytest.raises(BadStaffId):
        ids.check_staff_id(text)
