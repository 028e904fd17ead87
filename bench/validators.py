"""Measure the choices behind the record format: validator and plaintext encoding.

Usage: .venv/bin/python bench/validators.py
Builds one full case record from the example forms, then times, per record: parsing
the sealed plaintext as JSON and as YAML (PyYAML's C loader and cmgit's safe loader),
validating with python-jsonschema and jsonschema-rs, and decrypting with pyrage.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import jsonschema
import jsonschema_rs
import pyrage
import referencing
import yaml

from cmgit import yamlio
from cmgit.schema import CASE, SchemaSet

ROOT = Path(__file__).resolve().parent.parent
FORMS = ROOT / "tests" / "fixtures" / "forms"


def full_record(schemas: SchemaSet) -> dict[str, object]:
    record: dict[str, object] = {
        "case_id": "CP-7K2M9QX4",
        "version": 4,
        "state": "implementation",
        "episode": 1,
        "team": "north",
        "caseworker": "cw-001",
        "identified_on": "2026-03-02",
        "registered_on": "2026-03-03",
        "state_since": "2026-03-20",
        "state_history": [
            "2026-03-02 identified",
            "2026-03-03 registered",
            "2026-03-10 assessment",
            "2026-03-14 case_planning",
            "2026-03-20 implementation",
        ],
        "next_follow_up_due": "2026-04-03",
        "next_review_due": "2026-06-01",
        "risk_level": "medium",
        "immediate_risk": False,
        "separation_status": "separated",
        "sex": "female",
        "age_band": "12_14",
        "closure_reason": None,
        "closed_on": None,
        "comprehensive_assessment_required": False,
    }
    for name in ("identification", "registration", "consent", "assessment", "follow_up"):
        doc = yaml.safe_load((FORMS / f"{name}.yaml").read_text())[name]
        record[name] = [doc] if "items" in schemas.case_properties[name] else doc
    return record


def median_us(fn: Callable[[], object], runs: int = 7, inner: int = 200) -> float:
    fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner * 1e6)
    return statistics.median(samples)


def main() -> None:
    schemas = SchemaSet.load(ROOT / "schemas")
    record = full_record(schemas)
    as_json = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
    as_yaml = yamlio.dump(record).encode()
    registry = referencing.Registry().with_resources(
        (k, referencing.Resource.from_contents(v)) for k, v in schemas.schemas.items()
    )
    reference = jsonschema.Draft202012Validator(
        schemas.schemas[CASE],
        registry=registry,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    fast = jsonschema_rs.validator_for(
        schemas.schemas[CASE],
        registry=jsonschema_rs.Registry(list(schemas.schemas.items())),
        validate_formats=True,
    )
    assert reference.is_valid(record) and fast.is_valid(record)
    key = pyrage.x25519.Identity.generate()
    sealed = pyrage.encrypt(as_json + b" " * (8192 - len(as_json)), [key.to_public()], armored=True)
    print(f"machine: {platform.machine()}, Python {platform.python_version()}")
    print(f"record: {len(as_json)} bytes as JSON, {len(as_yaml)} bytes as YAML")
    rows = [
        ("json.loads", lambda: json.loads(as_json)),
        ("yaml CSafeLoader", lambda: yaml.load(as_yaml, Loader=yaml.CSafeLoader)),
        ("cmgit yamlio.load", lambda: yamlio.load(as_yaml)),
        ("python-jsonschema", lambda: reference.validate(record)),
        ("jsonschema-rs", lambda: fast.validate(record)),
        ("pyrage decrypt (8 KiB bucket)", lambda: pyrage.decrypt(sealed, [key])),
    ]
    for name, fn in rows:
        inner = 20 if "python-jsonschema" in name else 200
        print(f"  {name:<32} {median_us(fn, inner=inner):10.1f} us per record")


if __name__ == "__main__":
    main()
