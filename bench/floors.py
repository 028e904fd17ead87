"""The floors of the scale targets: what the libraries alone do, one process per core.

    python bench/floors.py open REPO          # parse every record's open fields
    python bench/floors.py sealed REPO KEY    # decrypt, parse and validate every record
    python bench/floors.py import REPO CSV MAP OUT  # seal each row's forms, one batch to git

Both read the record files of REPO's work tree, split over a pool of one process per core.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
import sys
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import jsonschema_rs
import pyrage
from pyrage import x25519

from cmgit import records
from cmgit.config import read_config
from cmgit.history import Git

CASE_SCHEMA = "urn:cmgit:schema:case"


def record_files(repo: Path) -> list[str]:
    return [
        os.path.join(d, f)
        for d, _, files in os.walk(repo / "records")
        for f in files
        if f.endswith(".yaml")
    ]


def parse_open(args: tuple[list[str], list[str]]) -> int:
    paths, order = args
    for path in paths:
        with open(path, "rb") as handle:
            records.parse_open_fields(handle.read(), order)
    return len(paths)


def open_sealed(args: tuple[list[str], list[str], list[str], dict[str, Any], str]) -> int:
    paths, order, fields, schemas, secret = args
    identity = x25519.Identity.from_str(secret)
    registry = jsonschema_rs.Registry(list(schemas.items()))
    validator = jsonschema_rs.validator_for(
        schemas[CASE_SCHEMA], registry=registry, validate_formats=True
    )
    valid = 0
    for path in paths:
        with open(path, "rb") as handle:
            open_fields, armored = records.parse_file(handle.read(), order)
        binary = base64.b64decode("".join(armored.splitlines()[1:-1]))
        forms = json.loads(pyrage.decrypt(binary, [identity]))["forms"]
        valid += validator.is_valid(records.Record(open_fields, forms).document(fields))
    return valid


def seal_rows(jobs: list[tuple[str, bytes, list[str]]]) -> list[bytes]:
    out = []
    for case_id, payload, recipients in jobs:
        sealed = pyrage.encrypt(
            payload, [x25519.Recipient.from_str(r) for r in recipients], armored=True
        ).decode("ascii")
        out.append(records.render_file({"case_id": case_id}, ["case_id"], sealed))
    return out


def import_floor(repo: Path, source: Path, map_file: Path, out: Path) -> int:
    """The floor of `cmgit import`: each row's forms (mapped as cmgit maps them) sealed
    with pyrage to the recipients the registry names for its caseworker, on every core,
    and written as one batch of git objects (`git fast-import`, one commit)."""
    from cmgit import exchange

    git = Git(repo)
    head = git.head()
    assert head is not None
    config = read_config(git, head)
    mapping = exchange.load_map(map_file.read_bytes())
    _, rows = exchange.read_csv(source.read_bytes())
    today = datetime.date(2026, 3, 1)
    jobs = []
    for number, cells in enumerate(rows, 1):
        row = exchange.map_row(number, cells, mapping, today, lambda f: f"{f}-00000000", {})
        member = config.registry.staff.get(str(row.open.get("caseworker")))
        if member is None:
            continue
        recipients = config.registry.recipients_for(member.team, member.id, config.settings)
        case_id = f"CP-{number:08d}"
        record = records.Record({"case_id": case_id, "version": 1, **row.open}, row.forms)
        jobs.append((case_id, records.seal_payload(record, None), recipients))
    workers = os.cpu_count() or 1
    chunks = [jobs[i :: workers * 4] for i in range(workers * 4)]
    with Pool(workers) as pool:
        files = [f for part in pool.map(seal_rows, chunks) for f in part]
    subprocess.run(["git", "init", "-q", "--bare", str(out)], check=True)
    stream = [b"commit refs/heads/floor\ncommitter f <f@example.org> 0 +0000\ndata 6\nfloor\n"]
    for number, data in enumerate(files):
        stream.append(f"M 100644 inline records/{number:06d}.yaml\ndata {len(data)}\n".encode())
        stream.append(data + b"\n")
    subprocess.run(["git", "fast-import", "--quiet"], cwd=out, input=b"".join(stream), check=True)
    return len(files)


def main() -> None:
    kind, repo = sys.argv[1], Path(sys.argv[2])
    if kind == "import":
        import_floor(repo, Path(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]))
        return
    git = Git(repo)
    head = git.head()
    assert head is not None
    schemas = read_config(git, head).schemas
    order = list(schemas.open_fields)
    files = record_files(repo)
    workers = os.cpu_count() or 1
    chunks = [files[i :: workers * 4] for i in range(workers * 4)]
    with Pool(workers) as pool:
        if kind == "open":
            done = sum(pool.map(parse_open, [(c, order) for c in chunks]))
        else:
            text = Path(sys.argv[3]).read_text()
            secret = next(w for w in text.split() if w.startswith("AGE-SECRET-KEY-"))
            jobs = [(c, order, list(schemas.field_order), schemas.schemas, secret) for c in chunks]
            done = sum(pool.map(open_sealed, jobs))
    if done != len(files):
        raise SystemExit(f"floor {kind}: {done} of {len(files)} records done")


if __name__ == "__main__":
    main()
