"""Record format 2 as values: the open file, entry paths, padding, deltas and entries."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmgit import crypto, entries, records
from cmgit.entries import AUDITOR_BLOB_LIMIT, Delta
from cmgit.errors import IntegrityError, ParseError, TooLarge

from .test_records import ARMOR, ORDER, open_fields

CASE = "CP-7K2M9QX4"
ID_FIELDS = {"notes": "id", "follow_ups": "id"}


# -- the open file -----------------------------------------------------------------


def test_open_file_is_the_record_files_open_lines_and_round_trips() -> None:
    data = entries.render_open_file(open_fields(), ORDER)
    record_file = records.render_file(open_fields(), ORDER, ARMOR)
    assert record_file.startswith(data)
    assert record_file[len(data) :].startswith(b"sealed: |\n")
    assert entries.parse_open_file(data, ORDER) == open_fields()
    # Keyless readers of format 1 read an open file as they read a record file.
    assert records.parse_open_fields(data, ORDER) == open_fields()


def test_an_open_file_of_the_limit_or_more_is_refused() -> None:
    # A team with a space is always written quoted: each letter added is one byte more.
    base = len(entries.render_open_file(open_fields(team=" "), ORDER))
    room = AUDITOR_BLOB_LIMIT - 1 - base  # the most letters that still fit
    fits = entries.render_open_file(open_fields(team=" " + "n" * room), ORDER)
    assert len(fits) == AUDITOR_BLOB_LIMIT - 1
    with pytest.raises(TooLarge) as refused:
        entries.render_open_file(open_fields(team=" " + "n" * (room + 1)), ORDER)
    assert refused.value.case_id == CASE and refused.value.hint
    with pytest.raises(TooLarge):
        entries.parse_open_file(fits + b"\n", ORDER)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t + "sealed: |\n  -----BEGIN AGE ENCRYPTED FILE-----\n",
        lambda t: t + "extra: 1\n",
        lambda t: t + "\n",
        lambda t: t[:-1],
        lambda t: t.replace("version: 3", "version: 03"),
        lambda t: t.replace("state: assessment", "state: 'assessment'"),
        lambda t: t.replace("\n", "\r\n"),
        lambda t: "# comment\n" + t,
        lambda t: t.replace("team: north", "team: n\u00f6rth"),
        lambda t: "",
    ],
)
def test_anything_but_canonical_open_lines_is_refused(mutate: Callable[[str], str]) -> None:
    text = entries.render_open_file(open_fields(), ORDER).decode()
    with pytest.raises((ParseError, IntegrityError)):
        entries.parse_open_file(mutate(text).encode(), ORDER)


def test_a_format_1_record_file_is_not_an_open_file() -> None:
    with pytest.raises(ParseError, match="open fields only"):
        entries.parse_open_file(records.render_file(open_fields(), ORDER, ARMOR), ORDER)


# -- paths -------------------------------------------------------------------------


def test_entry_paths_fan_out_as_record_paths_and_parse_back() -> None:
    assert entries.entries_dir(CASE) == "sealed/7/K/CP-7K2M9QX4"
    assert entries.entry_path(CASE, 9) == "sealed/7/K/CP-7K2M9QX4/CP-7K2M9QX4.9.age"
    assert entries.entry_path(CASE, 120) == "sealed/7/K/CP-7K2M9QX4/CP-7K2M9QX4.120.age"
    for version in (1, 9, 10, 120, 10**18 - 1):
        assert entries.parse_entry_path(entries.entry_path(CASE, version)) == (CASE, version)
        assert entries.parse_entry_name(f"{CASE}.{version}.age") == (CASE, version)


@pytest.mark.parametrize("version", [0, -1, 10**18, True, 1.0, "1"])
def test_an_entry_version_is_a_positive_integer(version: Any) -> None:
    with pytest.raises(ValueError):
        entries.entry_path(CASE, version)


_DIR = "sealed/7/K/CP-7K2M9QX4/"


@pytest.mark.parametrize(
    "path",
    [
        *(
            _DIR + f"CP-7K2M9QX4.{number}"
            for number in (
                "0.age",
                "01.age",
                "-1.age",
                "+1.age",
                "1.5.age",
                " 1.age",
                "1 .age",
                "\u0661.age",  # an Arabic-Indic one
                "\uff11.age",  # a full-width one
                "1e3.age",
                ".age",
                "age",
                "1",
                "1.AGE",
                "1.age.tmp",
                "1.age/",
                "9999999999999999999.age",
                "1.age\n",
            )
        ),
        _DIR + "1.age",
        _DIR + "CP-7K2M9QX5.1.age",  # another case's name in this case's folder
        _DIR + "CP-7K2M9QX4-1.age",
        _DIR + "x/CP-7K2M9QX4.1.age",
        "sealed/7K/CP-7K2M9QX4/CP-7K2M9QX4.1.age",  # a folder of 1,024
        "sealed/7/K/CP-7K2M9QX4.1.age",
        "sealed/7/K/CP-7K2M9QX4",
        "sealed/7/k/CP-7K2M9QX4/CP-7K2M9QX4.1.age",
        "sealed/7/M/CP-7K2M9QX4/CP-7K2M9QX4.1.age",
        "sealed/7/K/CP-7K2M9QX/CP-7K2M9QX.1.age",
        "sealed/7/K/cp-7K2M9QX4/cp-7K2M9QX4.1.age",
        "sealed/I/L/CP-IL2M9QX4/CP-IL2M9QX4.1.age",
        "Sealed/7K/CP-7K2M9QX4/CP-7K2M9QX4.1.age",
        "/sealed/7K/CP-7K2M9QX4/CP-7K2M9QX4.1.age",
        "sealed//CP-7K2M9QX4/CP-7K2M9QX4.1.age",
        "sealed/7//K/CP-7K2M9QX4/CP-7K2M9QX4.1.age",
        "records/7K/CP-7K2M9QX4.yaml",
        "records/7K/CP-7K2M9QX4/CP-7K2M9QX4.1.age",
        "",
    ],
)
def test_no_other_name_is_an_entry(path: str) -> None:
    assert entries.parse_entry_path(path) is None


def test_a_name_git_gives_a_diff_driver_is_known_only_as_cmgit_writes_it() -> None:
    assert entries.parse_entry_name("CP-7K2M9QX4.3.age") == (CASE, 3)
    assert entries.parse_entry_name("3.age") is None
    assert entries.parse_entry_name("Xa1b2c_CP-7K2M9QX4.3.age") is None


# -- padding -----------------------------------------------------------------------


def test_sealed_sizes_are_powers_of_two_and_one_and_a_half_times_them() -> None:
    sizes = [1024, 1536, 2048, 3072, 4096, 6144, 8192, 12288, 16384]
    room = [size - entries.SEAL_OVERHEAD for size in sizes]
    for smaller, most in zip([0, *room], room, strict=False):
        assert entries.bucket(smaller + 1) == most
        assert entries.bucket(most) == most
    assert entries.bucket(records.MAX_PAYLOAD) >= records.MAX_PAYLOAD


@pytest.mark.parametrize("length", [0, 1, 823, 824, 825, 1336, 1337, 5000, 60000])
def test_a_sealed_entry_is_never_below_the_auditor_filter(length: int) -> None:
    # Real age: git leaves out blobs of the limit or more, so no entry may be smaller;
    # age adds its overhead and a random "grease" stanza on top of the padded plaintext.
    recipient = crypto.generate_identity()[1]
    padded = entries.bucket(length)
    sealed = crypto.seal_binary(b" " * padded, [recipient])
    assert len(sealed) >= padded + entries.SEAL_OVERHEAD >= AUDITOR_BLOB_LIMIT


# -- the delta ---------------------------------------------------------------------

_text = st.text(max_size=6)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), _text)
_single = st.dictionaries(st.sampled_from(["a", "b", "c"]), _scalar, max_size=3)
_items = st.lists(
    st.fixed_dictionaries({"id": st.sampled_from([f"n-{i}" for i in range(8)]), "text": _text}),
    max_size=6,
    unique_by=lambda item: item["id"],
)
_forms = st.fixed_dictionaries(
    {},
    optional={
        "consent": _single,
        "closure": _single,
        "notes": _items,
        "follow_ups": _items,
        "tags": st.lists(_text, max_size=3),  # a list form without an id field
    },
)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


@settings(max_examples=400, deadline=None)
@given(_forms, _forms)
def test_apply_of_delta_gives_the_new_forms(old: dict[str, Any], new: dict[str, Any]) -> None:
    before = _json(old)
    change = entries.delta(old, new, ID_FIELDS)
    assert (change is None) == (_json(old) == _json(new))
    after = old if change is None else entries.apply(old, change)
    assert after == new and _json(after) == _json(new)  # item order included
    assert _json(old) == before
    assert entries.delta(new, new, ID_FIELDS) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(_forms, min_size=1, max_size=5))
def test_fold_of_successive_deltas_gives_the_last_forms(versions: list[dict[str, Any]]) -> None:
    deltas = []
    for old, new in zip([{}, *versions], versions, strict=False):
        change = entries.delta(old, new, ID_FIELDS)
        if change is not None:
            # What a reader folds is what was sealed and read back.
            deltas.append(entries.parse_entry(entries.entry_plaintext(CASE, 1, change)).delta)
    assert _json(entries.fold(deltas)) == _json(versions[-1])


def test_list_forms_change_by_items_only_when_kept_items_keep_their_order() -> None:
    one, two, three = ({"id": f"n-{i}", "text": "x"} for i in (1, 2, 3))
    edited = {**two, "text": "y"}
    change = entries.delta({"notes": [one, two]}, {"notes": [one, edited, three]}, ID_FIELDS)
    assert change == Delta({}, {"notes": [edited, three]}, (), {}, {"notes": "id"})
    change = entries.delta({"notes": [one, two]}, {"notes": [two]}, ID_FIELDS)
    assert change == Delta({}, {}, (), {"notes": ("n-1",)}, {"notes": "id"})
    change = entries.delta({"notes": [one, two]}, {"notes": [two, one]}, ID_FIELDS)
    assert change == Delta({"notes": [two, one]}, {}, (), {})
    change = entries.delta({"notes": [one], "closure": {}}, {}, ID_FIELDS)
    assert change == Delta({}, {}, ("notes", "closure"), {})


def test_a_value_of_another_json_type_is_a_change() -> None:
    change = entries.delta({"closure": {"a": 1}}, {"closure": {"a": True}}, ID_FIELDS)
    assert change is not None and change.set == {"closure": {"a": True}}


def test_apply_changes_neither_its_forms_nor_the_delta() -> None:
    one, two = {"id": "n-1", "text": "x"}, {"id": "n-2", "text": "y"}
    forms = {"notes": [one, two], "closure": {"a": 1}}
    change = entries.delta(
        forms, {"notes": [{**one, "text": "z"}, {"id": "n-3", "text": ""}]}, ID_FIELDS
    )
    assert change is not None
    forms_before, change_before = _json(forms), repr(change)
    result = entries.apply(forms, change)
    assert result is not forms and result["notes"] is not forms["notes"]
    assert _json(forms) == forms_before and repr(change) == change_before


@pytest.mark.parametrize(
    "change",
    [
        Delta({}, {}, ("closure",), {}),
        Delta({}, {}, (), {"notes": ("n-9",)}, {"notes": "id"}),
        Delta({}, {"consent": [{"id": "n-1"}]}, (), {}, {"consent": "id"}),
        Delta({}, {"notes": [{"id": "n-1"}]}, (), {}),
    ],
)
def test_a_delta_that_does_not_fit_the_forms_is_an_integrity_failure(change: Delta) -> None:
    with pytest.raises(IntegrityError):
        entries.apply({"notes": [{"id": "n-1"}], "consent": {"a": 1}}, change)


# -- sealed entries ----------------------------------------------------------------

CHANGE = Delta(
    {"closure": {"reason": "objectives_met", "text": "CANARY-CLOSE \u00e9"}},
    {"notes": [{"id": "n-2", "text": "CANARY-NOTE"}]},
    ("consent",),
    {"notes": ("n-1",)},
    {"notes": "id"},
)


def test_entry_round_trips_padded_to_its_bucket() -> None:
    data = entries.entry_plaintext(CASE, 9, CHANGE)
    padded = entries.bucket(len(data.rstrip(b" ")))
    assert len(data) == padded and padded + entries.SEAL_OVERHEAD >= AUDITOR_BLOB_LIMIT
    doc = json.loads(data)
    assert ",".join(doc) == "cmgit_entry,case_id,version,set,items,unset,removed,id_fields"
    assert (doc["cmgit_entry"], doc["case_id"], doc["version"]) == (1, CASE, 9)
    assert "\u00e9".encode() in data  # UTF-8, not escaped
    assert entries.parse_entry(data) == entries.Entry(CASE, 9, CHANGE)
    entries.check_entry(entries.parse_entry(data), CASE, 9, open_version=9)
    entries.check_entry(entries.parse_entry(data), CASE, 9, open_version=12)


@pytest.mark.parametrize(
    ("path_case", "path_version", "open_version", "refusal"),
    [
        ("CP-7KAAAAAA", 9, 9, "another case"),
        (CASE, 8, 9, "renamed or rolled back"),
        (CASE, 10, 10, "renamed or rolled back"),
        (CASE, 9, 8, "newer than the record"),
    ],
)
def test_an_entry_is_bound_to_its_path_and_the_open_version(
    path_case: str, path_version: int, open_version: int, refusal: str
) -> None:
    entry = entries.parse_entry(entries.entry_plaintext(CASE, 9, CHANGE))
    with pytest.raises(IntegrityError, match=refusal) as refused:
        entries.check_entry(entry, path_case, path_version, open_version)
    assert refused.value.case_id == path_case and refused.value.hint


def test_an_entry_above_the_largest_plaintext_is_refused() -> None:
    big = Delta({"closure": {"text": "x" * records.MAX_PAYLOAD}}, {}, (), {})
    with pytest.raises(TooLarge):
        entries.entry_plaintext(CASE, 1, big)
    with pytest.raises(TooLarge):
        entries.parse_entry(b" " * (entries.bucket(records.MAX_PAYLOAD) + 1))


def _document(**changes: Any) -> bytes:
    doc = json.loads(entries.entry_plaintext(CASE, 9, CHANGE))
    doc.update(changes)
    body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    return body + b" " * (entries.bucket(len(body)) - len(body))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b" " * 1024,
        b"null" + b" " * 1020,
        b"[]" + b" " * 1022,
        b"\xff" * 1024,
        b"[" * 100_000,
        b'{"a":' * 50_000,
        _document(cmgit_entry=True),
        _document(cmgit_entry=1.0),
        _document(cmgit_entry=2),
        _document(version=True),
        _document(version=9.0),
        _document(version=0),
        _document(version="9"),
        _document(case_id="CP-7K2M9QX"),
        _document(case_id=None),
        _document(extra=1),
        _document(set=[]),
        _document(items={"notes": {"id": "n-2"}}),
        _document(items={"notes": [{"text": "no id"}]}),
        _document(items={"notes": [{"id": "n-2"}, {"id": "n-2"}]}),
        _document(items={"notes": [{"id": 2}]}),
        _document(unset="consent"),
        _document(unset=["consent", "consent"]),
        _document(unset=["closure"]),
        _document(removed={"notes": ["n-2"]}),
        _document(removed={"notes": "n-1"}),
        _document(removed={"notes": [1]}),
        _document(id_fields={}),
        _document(id_fields={"notes": "id", "tags": "id"}),
        _document(id_fields={"notes": 1}),
        entries.entry_plaintext(CASE, 9, CHANGE).rstrip(b" ") + b" ",  # not its bucket
        entries.entry_plaintext(CASE, 9, CHANGE).replace(b" ", b"\n"),
        entries.entry_plaintext(CASE, 9, CHANGE).replace(b"\xc3\xa9", b"\\u00e9", 1),
        b"\xef\xbb\xbf" + entries.entry_plaintext(CASE, 9, CHANGE)[3:],
        entries.entry_plaintext(CASE, 9, CHANGE).replace(b'{"', b'{"case_id":"x","', 1),
    ],
)
def test_anything_else_is_not_an_entry(data: bytes) -> None:
    with pytest.raises(IntegrityError, match="does not hold a cmgit entry"):
        entries.parse_entry(data)


_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=2048),
        st.builds(lambda v: json.dumps(v).encode(), _json_values),
        st.builds(
            lambda key, value: _document(**{key: value}),
            st.sampled_from(entries.ENTRY_KEYS),
            _json_values,
        ),
    )
)
def test_parse_entry_raises_nothing_but_its_own_refusals(data: bytes) -> None:
    with contextlib.suppress(IntegrityError, TooLarge):
        entries.parse_entry(data)
