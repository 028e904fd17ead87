"""Checks of the JSON Schemas in schemas/ and of the example documents in tests/fixtures/.

Every schema must load in both validators cmgit relies on (python-jsonschema for
tooling, jsonschema-rs at run time), and both must agree on every example, valid or not.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
import pytest
import referencing
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_DIR = ROOT / "schemas"
FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures"

DRAFT = "https://json-schema.org/draft/2020-12/schema"

FORMS = [
    "identification",
    "consent",
    "registration",
    "assessment",
    "risk_assessment",
    "immediate_action",
    "bia",
    "bid",
    "ftr",
    "case_plan",
    "referral",
    "follow_up",
    "case_conference",
    "review",
    "closure",
    "post_closure_monitoring",
    "transfer",
    "assignment",
    "reopen",
    "note",
]
SINGLE_FORMS = [
    "identification",
    "registration",
    "ftr",
    "closure",
    "post_closure_monitoring",
    "transfer",
]
REPEATED_IDS = {
    "consent": "consent_id",
    "assessment": "assessment_id",
    "risk_assessment": "risk_assessment_id",
    "immediate_action": "action_id",
    "bia": "bia_id",
    "bid": "bid_id",
    "case_plan": "plan_id",
    "referral": "referral_id",
    "follow_up": "follow_up_id",
    "case_conference": "conference_id",
    "review": "review_id",
    "assignment": "assignment_id",
    "reopen": "reopen_id",
    "note": "note_id",
}
MODES = {name: "upsert" for name in REPEATED_IDS}
MODES.update({"follow_up": "append", "case_plan": "supersede"})
MODES.update({name: "single" for name in SINGLE_FORMS})

OPEN_FIELDS = [
    "case_id",
    "version",
    "record_format",
    "state",
    "episode",
    "team",
    "caseworker",
    "identified_on",
    "registered_on",
    "state_since",
    "state_history",
    "next_follow_up_due",
    "next_review_due",
    "risk_level",
    "immediate_risk",
    "separation_status",
    "sex",
    "age_band",
    "closure_reason",
    "closed_on",
    "comprehensive_assessment_required",
]
IDENTIFYING_WORDS = [
    "name",
    "birth",
    "dob",
    "location",
    "address",
    "place",
    "contact",
    "phone",
    "narrative",
    "summary",
    "note",
    "views",
    "story",
]
COMMON_DEFS = [
    "date",
    "partial_date",
    "staff_id",
    "team_id",
    "case_id",
    "item_id",
    "local_id",
    "short_text",
    "text",
    "age_recipient",
    "ssh_public_key",
    "separation_status",
    "child_category",
    "care_arrangement",
    "protection_concern",
    "vulnerability_factor",
    "intersecting_vulnerability",
    "need_domain",
    "service_type",
    "closure_reason",
    "age_band",
    "objective_status",
    "risk_level",
    "state",
    "sex",
    "staff_role",
]
STATES = [
    "identified",
    "registered",
    "assessment",
    "immediate_action",
    "case_planning",
    "implementation",
    "follow_up_review",
    "closure_pending",
    "post_closure_monitoring",
    "closed",
]
CLASS_RANK = {"O": 0, "S": 1, "P": 2}
FREE_TEXT_DEFS = (
    "urn:cmgit:schema:common#/$defs/short_text",
    "urn:cmgit:schema:common#/$defs/text",
)
# The one object whose additionalProperties is a schema: the staff id -> member mapping.
OPEN_MAPPINGS = {
    ("urn:cmgit:schema:staff", "/properties/staff"),
    ("urn:cmgit:schema:providers", "/properties/providers"),
    ("urn:cmgit:schema:case", "/properties/received_package/properties/sections"),
}


# ------------------------------------------------------------------ loading


def _schema_files() -> list[Path]:
    return sorted(SCHEMA_DIR.glob("*.schema.json")) + sorted(
        (SCHEMA_DIR / "forms").glob("*.schema.json")
    )


@functools.cache
def schemas() -> dict[str, dict[str, Any]]:
    """All schemas by $id."""
    out: dict[str, dict[str, Any]] = {}
    for path in _schema_files():
        doc = json.loads(path.read_text(encoding="utf-8"))
        out[doc["$id"]] = doc
    return out


def form_id(form: str) -> str:
    return "urn:cmgit:form:" + form


@functools.cache
def py_registry() -> referencing.Registry[Any]:
    resources = [(uri, referencing.Resource.from_contents(doc)) for uri, doc in schemas().items()]
    return referencing.Registry().with_resources(resources)


@functools.cache
def rs_registry() -> Any:
    return jsonschema_rs.Registry(list(schemas().items()))


@functools.cache
def py_validator(uri: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        schemas()[uri],
        registry=py_registry(),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


@functools.cache
def rs_validator(uri: str) -> Any:
    return jsonschema_rs.validator_for(
        schemas()[uri], registry=rs_registry(), validate_formats=True
    )


def verdicts(uri: str, instance: Any) -> tuple[bool, bool]:
    """(python-jsonschema says valid, jsonschema-rs says valid)."""
    return py_validator(uri).is_valid(instance), rs_validator(uri).is_valid(instance)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def form_fixture(form: str) -> dict[str, Any]:
    doc = load_yaml(FIXTURE_DIR / "forms" / f"{form}.yaml")
    assert isinstance(doc, dict) and list(doc) == [form], f"{form}.yaml: one key, {form!r}"
    body = doc[form]
    assert isinstance(body, dict)
    return body


# ------------------------------------------------------------------ walking


def walk(node: Any, pointer: str = "") -> Iterator[tuple[str, Any]]:
    """Every dict inside a JSON document, with its JSON pointer."""
    if isinstance(node, dict):
        yield pointer, node
        for key, value in node.items():
            yield from walk(value, f"{pointer}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{pointer}/{i}")


def subschemas(node: Any, pointer: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object (not enum values, defaults or annotations) in a schema."""
    if not isinstance(node, dict):
        return
    yield pointer, node
    for key in ("properties", "$defs"):
        for name, sub in node.get(key, {}).items():
            yield from subschemas(sub, f"{pointer}/{key}/{name}")
    for key in ("items", "additionalProperties", "propertyNames"):
        if isinstance(node.get(key), dict):
            yield from subschemas(node[key], f"{pointer}/{key}")
    for key in ("anyOf", "allOf", "oneOf"):
        for i, sub in enumerate(node.get(key, [])):
            yield from subschemas(sub, f"{pointer}/{key}/{i}")


def resolve(ref: str, base: str) -> tuple[dict[str, Any], str]:
    """Target of a $ref and the $id of the document it lives in."""
    uri, _, fragment = ref.partition("#")
    uri = uri or base
    node: Any = schemas()[uri]
    for part in [p for p in fragment.split("/") if p]:
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node, uri


def deref(schema: dict[str, Any], base: str) -> tuple[dict[str, Any], str]:
    """Follow $ref until a schema with content of its own is reached."""
    while "$ref" in schema and not any(k in schema for k in ("properties", "items", "enum")):
        schema, base = resolve(schema["$ref"], base)
    return schema, base


def refs_of(schema: dict[str, Any]) -> list[str]:
    out = [schema["$ref"]] if "$ref" in schema else []
    out += [s["$ref"] for s in schema.get("anyOf", []) if "$ref" in s]
    return out


def form_properties(form: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(pointer, property name, property schema) for every property of a form at any depth."""
    for pointer, node in subschemas(schemas()[form_id(form)]):
        for name, prop in node.get("properties", {}).items():
            yield f"{pointer}/properties/{name}", name, prop


def classified_leaves(
    schema: dict[str, Any], base: str, path: str, seen: frozenset[str] = frozenset()
) -> Iterator[tuple[str, str]]:
    """(path, class) of every classified property reachable from schema, following $refs."""
    if "x-cmgit-class" in schema:
        yield path, schema["x-cmgit-class"]
    for ref in refs_of(schema):
        if ref in seen:
            continue
        target, target_base = resolve(ref, base)
        yield from classified_leaves(target, target_base, path, seen | {ref})
    for name, prop in schema.get("properties", {}).items():
        yield from classified_leaves(prop, base, f"{path}.{name}", seen)
    if isinstance(schema.get("items"), dict):
        yield from classified_leaves(schema["items"], base, f"{path}[]", seen)
    for name, sub in schema.get("$defs", {}).items():
        yield from classified_leaves(sub, base, f"{path}#{name}", seen)


# ------------------------------------------------------------------ schema files


def test_every_expected_schema_file_exists() -> None:
    names = {p.relative_to(SCHEMA_DIR).as_posix() for p in _schema_files()}
    expected = {
        f"{n}.schema.json" for n in ("common", "case", "staff", "settings", "workflow", "providers")
    }
    expected |= {f"forms/{f}.schema.json" for f in FORMS}
    assert names == expected


@pytest.mark.parametrize("path", _schema_files(), ids=lambda p: p.name)
def test_schema_file_is_valid_draft_2020_12(path: Path) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["$schema"] == DRAFT
    stem = path.name.removesuffix(".schema.json")
    kind = "form" if path.parent.name == "forms" else "schema"
    assert doc["$id"] == f"urn:cmgit:{kind}:{stem}"
    jsonschema.Draft202012Validator.check_schema(doc)
    jsonschema_rs.validator_for(doc, registry=rs_registry(), validate_formats=True)


@pytest.mark.parametrize("uri", sorted(schemas()))
def test_every_reference_resolves(uri: str) -> None:
    for _, node in walk(schemas()[uri]):
        ref = node.get("$ref")
        if isinstance(ref, str):
            resolve(ref, uri)  # raises KeyError when the target is missing


# The workflow schema describes the procedure file, not data about children: it may hold
# free-form guard conditions, so the strict rules for record schemas do not apply to it.
RECORD_SCHEMAS = sorted(u for u in schemas() if u != "urn:cmgit:schema:workflow")


@pytest.mark.parametrize("uri", RECORD_SCHEMAS)
def test_objects_are_closed_and_explicit(uri: str) -> None:
    for pointer, node in subschemas(schemas()[uri]):
        if node.get("type") != "object" and "properties" not in node:
            continue
        if "$ref" in node and "properties" not in node:
            continue  # a property pointing at an object schema defined elsewhere
        if (uri, pointer) in OPEN_MAPPINGS:
            assert isinstance(node.get("additionalProperties"), dict), pointer
            assert "propertyNames" in node, pointer
            continue
        assert node.get("additionalProperties") is False, f"{uri}{pointer}"
        assert isinstance(node.get("properties"), dict) and node["properties"], f"{uri}{pointer}"
        for name in node.get("required", []):
            assert name in node["properties"], f"{uri}{pointer}: required {name} undefined"


@pytest.mark.parametrize("uri", sorted(schemas()))
def test_patterns_are_anchored_and_portable(uri: str) -> None:
    for pointer, node in subschemas(schemas()[uri]):
        pattern = node.get("pattern")
        if pattern is None:
            continue
        for escape in ("\\d", "\\w", "\\s", "\\D", "\\W", "\\S"):
            assert escape not in pattern, f"{uri}{pointer}: {escape} in {pattern}"
        assert pattern.startswith("^") and pattern.endswith("$"), f"{uri}{pointer}"


@pytest.mark.parametrize("uri", RECORD_SCHEMAS)
def test_every_property_has_one_type_and_bounded_strings(uri: str) -> None:
    for pointer, node in subschemas(schemas()[uri]):
        assert "oneOf" not in node, f"{uri}{pointer}"
        if "anyOf" in node:  # only the "value or null" shape
            branches = node["anyOf"]
            assert len(branches) == 2 and {"type": "null"} in branches, f"{uri}{pointer}"
        for name, prop in node.get("properties", {}).items():
            where = f"{uri}{pointer}/properties/{name}"
            typ = prop.get("type")
            if typ is None:  # a sealed single form: the form schema gives the type
                assert prop.get("$ref", "").startswith("urn:cmgit:form:"), f"{where}: no type"
                assert schemas()[prop["$ref"]]["type"] == "object", where
                continue
            if isinstance(typ, list):
                assert len(typ) == 2 and "null" in typ, where
            strings = [prop] if "string" in (typ if isinstance(typ, list) else [typ]) else []
            if typ == "array":
                strings.append(prop["items"])
                assert "maxItems" in prop, f"{where}: no maxItems"
            for s in strings:
                bounded = False
                for cand in [s] + [{"$ref": r} for r in refs_of(s)]:
                    target, _ = deref(cand, uri)
                    if any(k in target for k in ("maxLength", "enum", "pattern")):
                        bounded = True
                    elif target.get("type") != "string":
                        bounded = True  # an array of objects, checked on its own
                assert bounded, f"{where}: unbounded string"


def test_common_defs() -> None:
    defs = schemas()["urn:cmgit:schema:common"]["$defs"]
    for name in COMMON_DEFS:
        assert name in defs, name
    assert defs["state"]["enum"] == STATES
    assert defs["sex"]["enum"] == ["female", "male", "other", "not_disclosed"]
    assert defs["staff_role"]["enum"] == [
        "caseworker",
        "supervisor",
        "programme_manager",
        "coordinator",
        "auditor",
    ]
    assert defs["risk_level"]["enum"] == ["low", "medium", "high"]
    assert defs["date"]["format"] == "date"
    assert defs["short_text"]["maxLength"] == 200
    assert defs["text"]["maxLength"] == 20000


@pytest.mark.parametrize(
    ("definition", "good", "bad"),
    [
        (
            "case_id",
            ["CP-7K2M9QX4", "ABCDE-00000000"],
            ["CP-7K2M9QX", "cp-7K2M9QX4", "CP-7K2M9QXU", "CP-7K2M9QXI"],
        ),
        (
            "item_id",
            ["consent-3", "follow_up-120", "consent-7K2M9QX4"],
            ["consent", "Consent-3", "consent-1234567", "consent-7K2M9QXI", "consent-7k2m9qx4"],
        ),
        ("staff_id", ["cw-001", "sv-north"], ["c", "CW-001", "1cw", "cw 001"]),
        ("partial_date", ["2012", "2012-05", "2012-05-14"], ["12-05", "2012-5", "2012/05"]),
        ("date", ["2026-02-28", "2024-02-29"], ["2026-02-30", "2026-2-1", "2026-13-01"]),
        ("local_id", ["N1", "PRV-RC-01", "obj_2.a"], ["", "a b", "x" * 41]),
    ],
)
def test_common_formats(definition: str, good: list[str], bad: list[str]) -> None:
    wrapper = {
        "$schema": DRAFT,
        "$ref": f"urn:cmgit:schema:common#/$defs/{definition}",
    }
    py = jsonschema.Draft202012Validator(
        wrapper,
        registry=py_registry(),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    rs = jsonschema_rs.validator_for(wrapper, registry=rs_registry(), validate_formats=True)
    for value in good:
        assert py.is_valid(value) and rs.is_valid(value), value
    for value in bad:
        assert not py.is_valid(value) and not rs.is_valid(value), value


# ------------------------------------------------------------------ case record


def case_schema() -> dict[str, Any]:
    return schemas()["urn:cmgit:schema:case"]


def test_case_open_and_sealed_properties() -> None:
    props = case_schema()["properties"]
    for name, prop in props.items():
        assert prop.get("x-cmgit") in ("open", "sealed"), name
    open_names = [n for n, p in props.items() if p["x-cmgit"] == "open"]
    assert open_names == OPEN_FIELDS
    assert list(props)[: len(OPEN_FIELDS)] == OPEN_FIELDS, "open fields come first"
    assert case_schema()["required"] == OPEN_FIELDS
    sealed = {n for n, p in props.items() if p["x-cmgit"] == "sealed"}
    # previous_episodes is kept by cmgit itself when a case reopens, disclosures when a
    # package is made, received_package when a transfer comes in; nobody records them
    assert sealed == {*FORMS, "previous_episodes", "disclosures", "received_package"}
    assert props["previous_episodes"]["x-cmgit-mode"] == "system"
    assert "sealed" not in props


@pytest.mark.parametrize("form", FORMS)
def test_case_sealed_property_mode_and_id(form: str) -> None:
    prop = case_schema()["properties"][form]
    assert prop["x-cmgit-mode"] == MODES[form]
    if form in SINGLE_FORMS:
        assert prop["$ref"] == form_id(form)
        assert "x-cmgit-id" not in prop
        return
    assert prop["type"] == "array" and prop["items"] == {"$ref": form_id(form)}
    assert prop["maxItems"] == 1000
    id_field = prop["x-cmgit-id"]
    assert id_field == REPEATED_IDS[form]
    item = schemas()[form_id(form)]
    assert id_field in item["required"]
    assert item["properties"][id_field]["$ref"] == "urn:cmgit:schema:common#/$defs/item_id"


@pytest.mark.parametrize("form", SINGLE_FORMS)
def test_singleton_forms_carry_no_required_id(form: str) -> None:
    item = schemas()[form_id(form)]
    ids = [n for n in item["properties"] if n.endswith("_id") and n != "staff_id"]
    if form == "transfer":
        assert ids == ["transfer_id"] and "transfer_id" not in item["required"]
    else:
        assert [n for n in ids if n in item["required"]] == []


def test_no_identifying_word_in_open_names() -> None:
    for name, prop in case_schema()["properties"].items():
        if prop["x-cmgit"] != "open":
            continue
        # By word (a state history is no story), plural and compounds included.
        for word in IDENTIFYING_WORDS:
            assert not any(part.startswith(word) for part in name.split("_")), (
                f"open field {name} looks identifying ({word})"
            )


def test_personal_fields_are_reachable_only_under_sealed_properties() -> None:
    personal: list[str] = []
    for name, prop in case_schema()["properties"].items():
        for path, cls in classified_leaves(prop, "urn:cmgit:schema:case", name):
            if cls == "P":
                assert prop["x-cmgit"] == "sealed", f"P field {path} under open {name}"
                personal.append(path)
    assert "registration.child.full_name" in personal
    assert "closure.date_of_death" in personal


@pytest.mark.parametrize("form", FORMS)
def test_form_properties_are_classified_and_described(form: str) -> None:
    for where, _name, prop in form_properties(form):
        assert prop.get("x-cmgit-class") in CLASS_RANK, f"{form}{where}: class"
        desc = prop.get("description")
        assert isinstance(desc, str) and desc.strip() and "\n" not in desc, f"{form}{where}"
        assert len(desc) <= 200, f"{form}{where}: keep descriptions to one line"


@pytest.mark.parametrize("form", FORMS)
def test_group_class_is_the_most_sensitive_of_its_parts(form: str) -> None:
    uri = form_id(form)
    for where, _name, prop in form_properties(form):
        parts = [
            cls
            for path, cls in classified_leaves(prop, uri, "")
            if path  # children only
        ]
        if parts:
            most = max(parts, key=CLASS_RANK.__getitem__)
            assert CLASS_RANK[prop["x-cmgit-class"]] >= CLASS_RANK[most], f"{form}{where}"


def test_fields_that_must_not_be_collected_are_absent() -> None:
    for form in FORMS:
        for where, name, _ in form_properties(form):
            for banned in ("religion", "photo", "cause_of_death", "death_cause"):
                assert banned not in name, f"{form}{where}"
    closure = schemas()[form_id("closure")]["properties"]
    assert closure["date_of_death"]["x-cmgit-class"] == "P"
    assert [n for n in closure if "death" in n] == ["date_of_death"]


def test_extra_forms_reopen_and_note() -> None:
    reopen = schemas()[form_id("reopen")]
    assert (
        set(reopen["required"])
        == set(reopen["properties"])
        == {
            "reopen_id",
            "reopened_on",
            "reason",
            "new_concern_summary",
            "authorised_by",
        }
    )
    note = schemas()[form_id("note")]
    assert (
        set(note["required"])
        == set(note["properties"])
        == {
            "note_id",
            "written_on",
            "written_by",
            "text",
        }
    )


# ------------------------------------------------------------------ fixtures


def _free_text_fields(
    data: Any, schema: dict[str, Any], base: str, cls: str | None
) -> Iterator[tuple[Any, str | None, bool]]:
    """(value, class, is free text) for every leaf value of data."""
    own = schema.get("x-cmgit-class", cls)
    free = schema.get("$ref") in FREE_TEXT_DEFS
    target, tbase = deref(schema, base)
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _free_text_fields(value, target["properties"][key], tbase, own)
    elif isinstance(data, list):
        for value in data:
            yield from _free_text_fields(value, target["items"], tbase, own)
    else:
        yield data, own, free


@pytest.mark.parametrize("form", FORMS)
def test_form_fixture_is_valid_in_both_validators(form: str) -> None:
    body = form_fixture(form)
    uri = form_id(form)
    errors = [e.message for e in py_validator(uri).iter_errors(body)]
    assert errors == [], errors
    assert rs_validator(uri).is_valid(body)


@pytest.mark.parametrize("form", FORMS)
def test_form_fixture_marks_every_personal_or_sensitive_text(form: str) -> None:
    body = form_fixture(form)
    uri = form_id(form)
    schema = schemas()[uri]
    for key, value in body.items():
        for leaf, cls, free in _free_text_fields(value, schema["properties"][key], uri, None):
            if free and cls in ("P", "S"):
                assert "CANARY-" in leaf, f"{form}.{key}: {leaf!r}"


def _first(schema: dict[str, Any], base: str, want: Callable[[dict[str, Any]], bool]) -> str | None:
    for name, prop in schema["properties"].items():
        target, _ = deref(prop, base)
        if want(prop) or want(target):
            return name
    return None


def _leaves(
    data: Any, schema: dict[str, Any], base: str, path: tuple[Any, ...]
) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """(path, resolved schema) of every scalar value in data."""
    target, tbase = deref(schema, base)
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _leaves(value, target["properties"][key], tbase, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _leaves(value, target["items"], tbase, (*path, i))
    else:
        yield path, target


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for step in path[:-1]:
        doc = doc[step]
    doc[path[-1]] = value


def mutations(form: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Broken variants of a valid form fixture."""
    body = form_fixture(form)
    uri = form_id(form)
    schema = schemas()[uri]

    m = copy.deepcopy(body)
    del m[schema["required"][0]]
    yield "drop-required", m

    m = copy.deepcopy(body)
    m["religion"] = "CANARY-RELIGION-0000"
    yield "extra-religion", m

    for key, value in body.items():
        if isinstance(value, dict):
            m = copy.deepcopy(body)
            m[key]["religion"] = "CANARY-RELIGION-0001"
            yield f"nested-extra-{key}", m
            break

    leaves = list(_leaves(body, schema, uri, ()))
    dates = [path for path, leaf in leaves if leaf.get("format") == "date"]
    if dates:
        m = copy.deepcopy(body)
        _set(m, dates[0], "2026-02-30")
        yield "bad-date-" + ".".join(map(str, dates[0])), m

    codes = [path for path, leaf in leaves if "enum" in leaf]
    picks = [p for p in codes if len(p) == 1][:1] + [p for p in codes if len(p) > 1][:1]
    for path in picks:
        m = copy.deepcopy(body)
        _set(m, path, "not_a_code")
        yield "wrong-enum-" + ".".join(map(str, path)), m

    wrong = {"string": 42, "boolean": "yes", "integer": "1", "array": "x", "object": ["x"]}
    for key in schema["required"]:
        m = copy.deepcopy(body)
        m[key] = wrong[schema["properties"][key]["type"]]
        yield f"wrong-type-{key}", m

    m = copy.deepcopy(body)
    first_string = _first(schema, uri, lambda s: s.get("type") == "string")
    assert first_string is not None
    m[first_string] = ""
    yield f"empty-{first_string}", m


MUTATIONS = [(form, label, doc) for form in FORMS for label, doc in mutations(form)]


@pytest.mark.parametrize(
    ("form", "label", "doc"), MUTATIONS, ids=[f"{f}:{lab}" for f, lab, _ in MUTATIONS]
)
def test_broken_form_is_rejected_by_both(form: str, label: str, doc: dict[str, Any]) -> None:
    assert verdicts(form_id(form), doc) == (False, False)


def test_every_form_gets_the_core_mutations() -> None:
    for form in FORMS:
        labels = [label for f, label, _ in MUTATIONS if f == form]
        for kind in ("drop-required", "extra-religion", "bad-date", "wrong-type"):
            assert any(lab.startswith(kind) for lab in labels), (form, kind)
    assert sum(lab.startswith("wrong-enum") for _, lab, _ in MUTATIONS) >= 18


def full_case() -> dict[str, Any]:
    record: dict[str, Any] = {
        "case_id": "CP-7K2M9QX4",
        "version": 12,
        "record_format": 2,
        "state": "implementation",
        "episode": 1,
        "team": "north",
        "caseworker": "cw-001",
        "identified_on": "2026-03-02",
        "registered_on": "2026-03-04",
        "state_since": "2026-04-20",
        "state_history": [
            "2026-03-02 identified",
            "2026-03-04 registered",
            "2026-03-10 assessment",
            "2026-04-01 case_planning",
            "2026-04-20 implementation",
        ],
        "next_follow_up_due": "2026-04-12",
        "next_review_due": "2026-06-15",
        "risk_level": "medium",
        "immediate_risk": False,
        "separation_status": "separated",
        "sex": "female",
        "age_band": "12_14",
        "closure_reason": None,
        "closed_on": None,
        "comprehensive_assessment_required": False,
    }
    for form in FORMS:
        body = form_fixture(form)
        record[form] = body if form in SINGLE_FORMS else [body]
    return record


def test_full_case_record_is_valid_in_both() -> None:
    record = full_case()
    errors = [e.message for e in py_validator("urn:cmgit:schema:case").iter_errors(record)]
    assert errors == [], errors
    assert rs_validator("urn:cmgit:schema:case").is_valid(record)
    minimal = {k: v for k, v in record.items() if k in OPEN_FIELDS}
    minimal.update(registered_on=None, risk_level=None, sex=None, age_band=None)
    assert verdicts("urn:cmgit:schema:case", minimal) == (True, True)


@pytest.mark.parametrize(
    ("label", "change"),
    [
        ("sealed-field", lambda r: r.update(sealed="-----BEGIN AGE ENCRYPTED FILE-----")),
        ("missing-open", lambda r: r.pop("state_since")),
        ("bad-state", lambda r: r.update(state="archived")),
        ("bad-case-id", lambda r: r.update(case_id="CP-2026-0001")),
        ("version-zero", lambda r: r.update(version=0)),
        ("bad-nullable-date", lambda r: r.update(closed_on="2026-02-30")),
        ("single-as-list", lambda r: r.update(closure=[r["closure"]])),
        ("list-as-single", lambda r: r.update(consent=r["consent"][0])),
        ("bad-item", lambda r: r["note"].append({"note_id": "note-2"})),
        ("open-name", lambda r: r.update(child_name="CANARY-NAME-0002")),
    ],
)
def test_broken_case_record_is_rejected_by_both(
    label: str, change: Callable[[dict[str, Any]], Any]
) -> None:
    record = full_case()
    change(record)
    assert verdicts("urn:cmgit:schema:case", record) == (False, False), label


# ------------------------------------------------------------------ staff and settings


def test_staff_fixture_is_valid_in_both() -> None:
    doc = load_yaml(FIXTURE_DIR / "staff.yaml")
    errors = [e.message for e in py_validator("urn:cmgit:schema:staff").iter_errors(doc)]
    assert errors == [], errors
    assert rs_validator("urn:cmgit:schema:staff").is_valid(doc)


@pytest.mark.parametrize(
    ("label", "change"),
    [
        ("bad-key", lambda d: d["staff"].update({"CW 9": d["staff"]["cw-001"]})),
        ("bad-role", lambda d: d["staff"]["cw-001"].update(role="case_manager")),
        ("bad-recipient", lambda d: d["staff"]["cw-001"].update(recipient="age1short")),
        ("secret-key", lambda d: d["staff"]["cw-001"].update(recipient="AGE-SECRET-KEY-1QQQ")),
        ("bad-signing-key", lambda d: d["staff"]["cw-001"].update(signing_key="ssh-dss AAAA")),
        ("missing-active", lambda d: d["staff"]["cw-001"].pop("active")),
        ("extra-member-field", lambda d: d["staff"]["cw-001"].update(phone="CANARY-PHONE-1")),
        ("extra-top", lambda d: d.update(teams={})),
    ],
)
def test_broken_staff_is_rejected_by_both(label: str, change: Callable[[Any], Any]) -> None:
    doc = load_yaml(FIXTURE_DIR / "staff.yaml")
    change(doc)
    assert verdicts("urn:cmgit:schema:staff", doc) == (False, False), label


def test_settings_fixture_is_valid_in_both() -> None:
    doc = load_yaml(FIXTURE_DIR / "settings.yaml")
    errors = [e.message for e in py_validator("urn:cmgit:schema:settings").iter_errors(doc)]
    assert errors == [], errors
    assert rs_validator("urn:cmgit:schema:settings").is_valid(doc)


@pytest.mark.parametrize(
    ("label", "change"),
    [
        ("prefix", lambda d: d.update(case_id_prefix="cp")),
        ("caseload", lambda d: d.update(caseload_limit=0)),
        ("monitoring-months", lambda d: d.update(post_closure_monitoring_months=2)),
        ("suppression", lambda d: d.update(suppression_threshold=1)),
        ("reader-role", lambda d: d.update(reader_roles=["auditor"])),
        ("reader-dup", lambda d: d.update(reader_roles=["coordinator", "coordinator"])),
        ("no-criteria", lambda d: d.update(vulnerability_criteria=[])),
        ("interval-key", lambda d: d["follow_up_interval_days"].update(urgent=1)),
        ("interval-missing", lambda d: d["follow_up_interval_days"].pop("low")),
        ("profile", lambda d: d.update(display_profile="steps9")),
        ("extra", lambda d: d.update(programme_id="x")),
    ],
)
def test_broken_settings_are_rejected_by_both(label: str, change: Callable[[Any], Any]) -> None:
    doc = load_yaml(FIXTURE_DIR / "settings.yaml")
    change(doc)
    assert verdicts("urn:cmgit:schema:settings", doc) == (False, False), label


def settings_defaults() -> dict[str, Any]:
    props = schemas()["urn:cmgit:schema:settings"]["properties"]
    return {name: copy.deepcopy(p["default"]) for name, p in props.items() if "default" in p}


def test_settings_defaults_make_a_valid_document() -> None:
    settings = schemas()["urn:cmgit:schema:settings"]
    defaults = settings_defaults()
    assert set(settings["required"]) - set(defaults) == {"vulnerability_criteria"}
    assert defaults["caseload_limit"] == 25
    assert defaults["follow_up_interval_days"] == {
        "immediate_action": 1,
        "high": 7,
        "medium": 14,
        "low": 30,
    }
    inner = settings["properties"]["follow_up_interval_days"]["properties"]
    assert {k: v["default"] for k, v in inner.items()} == defaults["follow_up_interval_days"]
    assert verdicts("urn:cmgit:schema:settings", defaults) == (False, False)
    defaults["vulnerability_criteria"] = ["uasc"]
    assert verdicts("urn:cmgit:schema:settings", defaults) == (True, True)
