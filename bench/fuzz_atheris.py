"""Coverage-guided fuzzing of cmgit's parsers of outside input with atheris (optional).

Usage: .venv/bin/pip install atheris
       .venv/bin/python bench/fuzz_atheris.py -max_total_time=300 [corpus-dir]
The first input byte picks the parser (record file, sealed plaintext, sealed block,
form file, staff registry, settings, commit trailers, case ID); the rest is its input.
Any exception that is not a CmgitError, or a message quoting the canary, is a finding.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import atheris

with atheris.instrument_imports():
    from cmgit import config, crypto, history, ids, records, yamlio
    from cmgit.errors import CmgitError
    from cmgit.registry import Registry
    from cmgit.schema import SETTINGS, STAFF, SchemaSet
    from cmgit.store import Repository

SCHEMAS = SchemaSet.load(Path(__file__).resolve().parent.parent / "schemas")
ORDER = SCHEMAS.open_fields
FORMS = list(SCHEMAS.sealed_fields)
CANARY = b"CANARY"


def staff(data: bytes) -> None:
    Registry.from_doc(config.read_document(data, SCHEMAS, STAFF, "staff.yaml"))


def target(data: bytes) -> None:
    if not data:
        return
    choice, body = data[0] % 8, data[1:]
    text = body.decode("latin-1")
    try:
        if choice == 0:
            records.parse_file(body, ORDER)
            records.parse_open_fields(body, ORDER)
        elif choice == 1:
            records.parse_payload(body)
        elif choice == 2:
            crypto.inspect(text)
        elif choice == 3:
            Repository.read_form_file(
                SimpleNamespace(schemas=SCHEMAS),  # type: ignore[arg-type]
                body,
                allowed=FORMS,
            )
        elif choice == 4:
            staff(body)
        elif choice == 5:
            config.read_document(body, SCHEMAS, SETTINGS, "settings.yaml")
        elif choice == 6:
            history.parse_trailers(text)
        else:
            ids.case_id_from_path(text)
            ids.check_case_id(text)
            yamlio.load(body)
    except CmgitError as exc:
        if CANARY.decode() in str(exc):
            raise AssertionError("an error message quotes its input") from None


def main() -> None:
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
