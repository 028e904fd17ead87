"""Migrations, pure: a migration file read and checked, and applied to a record value.
No git, no age: values in, values out."""

from __future__ import annotations

import marshal
from typing import Any

import pytest

from cmgit import migrations
from cmgit.errors import SchemaError
from cmgit.migrations import FORMAT_FIELD, Migration, MigrationConflict

PATH = "schemas/migrations/0002-rename-risk-values.yaml"
OPEN = ("case_id", "version", FORMAT_FIELD, "risk_level", "separation_status")
EXAMPLE = b"""format: 2
reason: rename_risk_values
steps:
  - map_values: {field: risk_level, values: {high: elevated}}
  - map_values: {field: risk_assessment.risk_level, values: {high: elevated}}
  - rename_field: {field: assessment.old_name, to: new_name}
  - set_default: {field: assessment.new_field, value: "x"}
  - move_field: {field: registration.x, to: identification.x}
  - drop_field: {field: assessment.y, reason: no_longer_collected}
"""


def migration(text: bytes = EXAMPLE, path: str = PATH) -> Migration:
    return migrations.parse(path, text)


def record() -> tuple[dict[str, Any], dict[str, Any]]:
    open_fields = {
        "case_id": "CP-7K2M9QX4",
        "version": 4,
        "risk_level": "high",
        "separation_status": "separated",
    }
    forms = {
        "risk_assessment": [{"risk_level": "high"}, {"risk_level": "low"}],
        "assessment": [
            {"old_name": "a", "y": "CANARY-dropped", "new_field": "kept"},
            {"old_name": "b", "y": "CANARY-dropped"},
        ],
        "registration": {"x": "moved", "other": 1},
        "identification": {"given_name": "CANARY-NAME"},
    }
    return open_fields, forms


def test_a_migration_file_is_read_with_its_steps() -> None:
    found = migration()
    assert (found.name, found.format, found.reason) == (
        "0002-rename-risk-values",
        2,
        "rename_risk_values",
    )
    assert [s.kind for s in found.steps] == [
        "map_values",
        "map_values",
        "rename_field",
        "set_default",
        "move_field",
        "drop_field",
    ]
    assert found.renamed() == [
        "assessment.old_name -> assessment.new_name",
        "registration.x -> identification.x",
    ]
    assert found.path == PATH and found.requires_cmgit is None


def test_applying_it_changes_what_the_steps_say_and_sets_the_format() -> None:
    open_fields, forms = record()
    new_open, new_forms = migrations.apply([migration()], open_fields, forms, OPEN)
    assert new_open == {
        "case_id": "CP-7K2M9QX4",
        "version": 4,  # the store bumps the version when it commits
        FORMAT_FIELD: 2,
        "risk_level": "elevated",
        "separation_status": "separated",
    }
    assert new_forms == {
        "risk_assessment": [{"risk_level": "elevated"}, {"risk_level": "low"}],
        "assessment": [
            {"new_name": "a", "new_field": "kept"},  # a value there is kept
            {"new_name": "b", "new_field": "x"},
        ],
        "registration": {"other": 1},
        "identification": {"given_name": "CANARY-NAME", "x": "moved"},
    }
    assert (open_fields, forms) == record(), "the values given are left as they were"
    assert migrations.record_format(new_open) == 2 and migrations.record_format(open_fields) == 1


def test_in_place_gives_the_same_record_from_the_values_given() -> None:
    """The store, done with the record it loaded, lets the steps change it instead of a
    copy: the same result."""
    expected = migrations.apply([migration()], *record(), OPEN)
    open_fields, forms = record()
    assert migrations.apply([migration()], open_fields, forms, OPEN, in_place=True) == expected
    assert forms != record()[1]  # the values given were the ones changed


def test_audit_recomputes_the_open_fields_alone() -> None:
    open_fields, forms = record()
    whole = migrations.apply([migration()], open_fields, forms, OPEN)[0]
    assert migrations.apply_open([migration()], open_fields, OPEN) == whole


def test_an_open_field_the_record_lacks_is_null_and_migrations_apply_in_order() -> None:
    second = migration(
        b"format: 3\nreason: back\nsteps:\n"
        b"  - map_values: {field: risk_level, values: {elevated: very_high}}\n",
        "schemas/migrations/0003-back.yaml",
    )
    found = migrations.apply_open([migration(), second], {"case_id": "CP-1", "version": 1}, OPEN)
    assert found[FORMAT_FIELD] == 3 and found["risk_level"] is None
    both = migrations.apply_open([migration(), second], record()[0], OPEN)
    assert both["risk_level"] == "very_high"
    assert migrations.pending([second, migration()], 2) == [second]
    assert migrations.repository_format([migration(), second]) == 3
    assert migrations.repository_format([]) == 1


def test_map_values_keeps_types_apart_and_maps_lists() -> None:
    text = (
        b"format: 2\nreason: r\nsteps:\n"
        b"  - map_values: {field: a.flag, values: {1: 2}}\n"
        b"  - map_values: {field: a.codes, values: {x: y}}\n"
    )
    given = {"a": {"flag": True, "codes": ["x", "z"]}}
    _, forms = migrations.apply([migration(text)], {}, given, ())
    assert forms["a"] == {"flag": True, "codes": ["y", "z"]}  # True is not 1


def test_a_rename_onto_a_field_the_record_has_is_a_conflict_naming_no_value() -> None:
    text = b"format: 2\nreason: r\nsteps:\n  - rename_field: {field: a.old, to: new}\n"
    with pytest.raises(MigrationConflict) as caught:
        migrations.apply([migration(text)], {}, {"a": {"old": "CANARY-1", "new": "CANARY-2"}}, ())
    assert "CANARY" not in str(caught.value)
    assert "at /a/new: the field exists already" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"format: 3\nreason: r\nsteps: []\n", "format must be 2, the number its file name"),
        (b"format: 2\nreason: Rename Things\nsteps: []\n", "reason is a code"),
        (b"format: 2\nreason: r\nsteps: []\nauthor: me\n", "unknown key 'author'"),
        (b"format: 2\nsteps: []\n", "reason is missing"),
        (b"format: 2\nreason: r\nsteps:\n  - rename: {field: a}\n", "unknown kind of step"),
        (
            b"format: 2\nreason: r\nsteps:\n  - drop_field: {field: a.b, reason: Gone now}\n",
            "step 1 (drop_field): reason is a code",
        ),
        (
            b"format: 2\nreason: r\nsteps:\n  - drop_field: {field: a..b, reason: gone}\n",
            "a field is a dotted path of field names",
        ),
        (
            b"format: 2\nreason: r\nsteps:\n  - rename_field: {field: a.b, to: c.d}\n",
            "to is the new name of the field, without a path",
        ),
        (
            b"format: 2\nreason: r\nsteps:\n  - set_default: {field: a.b, value: 1, x: 2}\n",
            "unknown key 'x'",
        ),
        (
            b"format: 2\nreason: r\nsteps:\n  - map_values: {field: a.b, values: []}\n",
            "values maps each old value to its new one",
        ),
        (b"format: 2\nreason: r\nsteps: []\nrequires_cmgit: latest\n", "requires_cmgit is a"),
        (b"- just a list\n", "is not a mapping"),
    ],
)
def test_a_malformed_migration_is_refused_with_cmgits_own_message(
    text: bytes, message: str
) -> None:
    with pytest.raises(SchemaError) as caught:
        migration(text)
    assert str(caught.value).startswith("schemas/migrations/0002-rename-risk-values: ")
    assert message in str(caught.value)


def test_file_names_and_the_sequence_are_checked() -> None:
    with pytest.raises(SchemaError, match="holds a file that is not a migration"):
        migrations.parse("schemas/migrations/notes.txt", b"")
    with pytest.raises(SchemaError, match="the first migration brings records to format 2"):
        migrations.parse("schemas/migrations/0001-first.yaml", b"format: 1\nreason: r\nsteps: []\n")
    assert migrations.file_format("schemas/migrations/0007-x.yaml") == 7
    assert migrations.file_format("schemas/0007-x.yaml") is None
    gap = {"schemas/migrations/0003-later.yaml": b"format: 3\nreason: r\nsteps: []\n"}
    with pytest.raises(SchemaError, match="format 3 where format 2 was expected"):
        migrations.read_all(gap)
    both = {PATH: EXAMPLE, **gap}
    assert [m.format for m in migrations.read_all(both)] == [2, 3]


def test_a_move_between_open_fields_and_forms_is_refused() -> None:
    text = b"format: 2\nreason: r\nsteps:\n  - move_field: {field: registration.x, to: district}\n"
    with pytest.raises(SchemaError, match="between the open fields and the sealed forms"):
        migrations.check_against(migration(text), (*OPEN, "district"))
    migrations.check_against(migration(), OPEN)


def test_the_oldest_writer_is_the_highest_version_required() -> None:
    def needing(version: str, number: int) -> Migration:
        return migration(
            f'format: {number}\nreason: r\nsteps: []\nrequires_cmgit: "{version}"\n'.encode(),
            f"schemas/migrations/{number:04d}-x.yaml",
        )

    assert migrations.oldest_writer([needing("0.10.0", 2), needing("0.9.3", 3)]) == "0.10.0"
    assert migrations.oldest_writer([migration()]) is None
    assert migrations.version_key("0.2.0.dev3") == (0, 2, 0) < migrations.version_key("0.10.0")


def test_a_migration_is_remembered_as_plain_data() -> None:
    found = migration()
    stored = marshal.loads(marshal.dumps(found.data()))
    assert Migration.from_data(stored) == found


def test_the_version_a_write_is_checked_against_is_the_installed_one() -> None:
    # cmgit reads its version from cmgit/__init__.py (the build takes it from there too),
    # never from the installed metadata, which costs more than a command's start.
    import importlib.metadata

    from cmgit import __version__
    from cmgit.store.core import running_version

    assert running_version() == __version__ == importlib.metadata.version("cmgit")
