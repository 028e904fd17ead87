"""Cases in and out: import from another system's CSV export, export to CSV, and the
disclosure of one case to the child or family it is about.

An import is one unit of work: every row made into a record (`cmgit.exchange`, pure),
checked and sealed on every core, written as git objects, and committed as ONE `import`
commit carrying the source file's hash, so an import is all there or not there at all,
and the same file is never imported twice. Rows with problems are reported by number and
field and left out.

Export and disclosure write a file sealed to the recipient named, and make an event
commit of the shape `cmgit.events` defines. An export changes no file: its event ID, the
row count and, in the clear, the reason code are all it keeps; the fields chosen are not
kept, since they can tell what the cases are about. A disclosure records its sealed
details in the case's `disclosures` list (the recipient only as a hash), one version on,
so the case's own log shows it.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import crypto, events, exchange, ids, pool, workflow, yamlio
from ..errors import CmgitError, NotARecipient, Refused, SchemaError, UsageError
from ..guards import KEY_WORKER, to_date
from ..keyring.wrap import new_case_key
from ..records import Record
from ..registry import AUDITOR, CASEWORKER, PROGRAMME_MANAGER, Staff
from . import bulk, casekeys, unit
from .core import Committed, Core

SOURCE = "Cmgit-Source"
COUNT = "Cmgit-Count"
CHUNK = 100  # records sealed by one worker task


@dataclass
class ImportReport:
    """What an import did or, for a dry run, would do. Problems never hold a value."""

    source: str
    rows: int
    problems: list[str] = field(default_factory=list)
    case_ids: list[str] = field(default_factory=list)
    commit: str | None = None
    dry_run: bool = False

    @property
    def failed_rows(self) -> int:
        return len({p.split(":", 1)[0] for p in self.problems if p.startswith("row ")})

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows": self.rows,
            "imported": 0 if self.dry_run else len(self.case_ids),
            "importable": len(self.case_ids),
            "failed_rows": self.failed_rows,
            "problems": self.problems,
            "commit": self.commit,
            "dry_run": self.dry_run,
        }


@dataclass(frozen=True)
class Sealed:
    """A file for someone outside the repository, and the event commit that records it."""

    data: bytes
    event_id: str
    rows: int
    commit: str


# -- import --------------------------------------------------------------------------------


def import_cases(
    repo: Core,
    identities: Sequence[crypto.Identity],
    source: bytes,
    map_data: bytes | None,
    *,
    today: dt.date,
    dry_run: bool = False,
) -> ImportReport:
    """Create a case from every row without problems, in one `import` commit."""
    repo.check_config_trusted()
    actor = repo.acting(identities, PROGRAMME_MANAGER, action="importing cases")
    digest = exchange.source_hash(source)
    previous = _imported_by(repo, digest)
    if previous is not None:
        raise Refused(
            f"this file was imported already, in commit {previous[:12]}",
            hint="nothing to do; to import corrected rows, put them in a new file",
        )
    if crypto.is_age_file(source):
        # An export sealed to the caller: opened in memory with the caller's identity.
        source = crypto.decrypt_message(source, identities)
    mapping = exchange.OWN_MAP if map_data is None else exchange.load_map(map_data)
    header, cells = exchange.read_csv(source)
    report = ImportReport(digest, len(cells), dry_run=dry_run)
    report.problems = exchange.check_header(header, mapping, repo.schemas.sealed_fields)
    if report.problems:
        return report
    case_ids = _new_case_ids(repo, len(cells))
    job = _Job(repo, mapping, cells, case_ids, today, not dry_run, _id_fields(repo))
    files: dict[str, bytes | None] = {}
    keyring: dict[str, Mapping[str, bytes] | None] = {}
    for number, outcome in enumerate(_in_pool(job), 1):
        if isinstance(outcome, list):
            report.problems.extend(f"row {number}: {problem}" for problem in outcome)
            continue
        case_id = case_ids[number - 1]
        report.case_ids.append(case_id)
        files.update(outcome[0])
        if outcome[1] is not None:
            keyring[case_id] = outcome[1]
    report.problems.sort(key=lambda p: int(p.split(":", 1)[0][4:]))
    if dry_run or not files:
        return report
    count = len(report.case_ids)
    with unit.change(repo, list(files)) as parent:
        if keyring:
            # The keys first: cases committed without them could be read by no one.
            casekeys.write_keyring(repo, keyring, actor)
        report.commit = unit.commit(
            repo,
            files,
            f"import: {count} cases",
            [
                ("Cmgit-Action", "import"),
                (SOURCE, digest),
                (COUNT, str(count)),
                ("Cmgit-Date", today.isoformat()),
            ],
            actor,
            parent,
        )
    return report


def _imported_by(repo: Core, digest: str) -> str | None:
    """The commit that imported a file with this hash, if any."""
    if repo.git.head() is None:
        return None
    found = repo.git.text(
        "log", "-1", "--format=%H", "--fixed-strings", f"--grep={SOURCE}: {digest}", "HEAD"
    ).strip()
    return found or None


def _new_case_ids(repo: Core, count: int) -> list[str]:
    """A new case ID for each row, none already taken (a row left out leaves one unused)."""
    taken = set(repo.committed_records())
    out: list[str] = []
    while len(out) < count:
        case_id = ids.new_case_id(repo.settings["case_id_prefix"], os.urandom(5))
        if case_id not in taken:
            taken.add(case_id)
            out.append(case_id)
    return out


def _id_fields(repo: Core) -> dict[str, str]:
    return {
        form: id_field
        for form in repo.schemas.sealed_fields
        if (id_field := repo.schemas.form_id_field(form))
    }


def _guard_problems(repo: Core, row: exchange.Row, today: dt.date) -> Iterator[str]:
    """What the workflow and the registry refuse in a row, before any schema check."""
    state = row.open.get("state", workflow.INITIAL_STATE)
    if not isinstance(state, str) or state not in repo.workflow.states:
        yield "state: not a state of the workflow (a code the map's values do not list)"
    worker = repo.registry.staff.get(str(row.open.get("caseworker")))
    if worker is None or not worker.active or worker.role != CASEWORKER:
        yield f"caseworker: not an active caseworker of this programme (guard {KEY_WORKER})"
    elif row.open.get("team", worker.team) != worker.team:
        yield "team: not the caseworker's team"
    identified = to_date((row.forms.get("identification") or {}).get("identified_on"))
    since = to_date(row.open.get("state_since", today.isoformat()))
    if identified is not None and identified > today:
        yield "identification.identified_on: after today"
    if since is None or since > today:
        yield "state_since: not a day up to today"
    elif identified is not None and since < identified:
        yield "state_since: before the case was identified"


def _record(repo: Core, case_id: str, row: exchange.Row, today: dt.date) -> Record:
    """The record a row makes, version 1, in its state since the day the row names."""
    worker = repo.registry.get(row.open["caseworker"])
    since = row.open.get("state_since", today.isoformat())
    state = row.open.get("state", workflow.INITIAL_STATE)
    open_fields: dict[str, Any] = {name: None for name in repo.schemas.open_fields}
    open_fields.update(
        case_id=case_id,
        version=1,
        episode=row.open.get("episode", 1),
        team=worker.team,
        caseworker=worker.id,
        immediate_risk=False,
        comprehensive_assessment_required=row.open.get("comprehensive_assessment_required", False),
        state=state,
        state_since=since,
    )
    if workflow.STATE_HISTORY in open_fields:
        open_fields[workflow.STATE_HISTORY] = [f"{since} {state}"]
    forms = row.forms
    if "assignment" not in forms:
        forms["assignment"] = [
            {
                "assignment_id": ids.new_item_id("assignment", os.urandom(5)),
                "staff_id": worker.id,
                "role_on_case": "key_caseworker",
                "from": since,
                "reason": "initial",
            }
        ]
    return Record(open_fields, forms)


@dataclass(frozen=True)
class _Job:
    """One import, as the workers inherit it."""

    repo: Core
    mapping: exchange.ImportMap
    cells: list[dict[str, str]]
    case_ids: list[str]
    today: dt.date
    seal: bool
    id_fields: dict[str, str]


# Set in the parent just before the pool forks, for the workers to inherit.
_JOB: _Job | None = None


# What a row makes: the files of its case and, in format 2, its key's keyring files; or
# its problems (each "field: what is wrong").
Made = tuple[dict[str, bytes], dict[str, bytes] | None] | list[str]


def _in_pool(job: _Job) -> list[Made]:
    """Each row mapped, checked and (unless a dry run) sealed into its record file, its
    blob written, on every core; a row's problems in place of its file."""
    from . import POOL_FROM

    global _JOB
    _JOB = job
    count = len(job.cells)
    chunks = [list(range(i, min(i + CHUNK, count))) for i in range(0, count, CHUNK)]
    try:
        with job.repo.progress.task("Importing cases", count) as advance:
            if count < POOL_FROM or pool.workers() < 2:
                parts: Iterator[list[Made]] = map(_run_chunk, chunks)
            else:
                parts = pool.fork_map(_run_chunk, chunks, _own_reader)
            out: list[Made] = []
            for part in parts:
                out.extend(part)
                advance(len(part))
            return out
    finally:
        _JOB = None


def _own_reader() -> None:
    assert _JOB is not None
    _JOB.repo.git.forget_reader()


def _run_chunk(indexes: list[int]) -> list[Made]:
    assert _JOB is not None
    return [_one(_JOB, index) for index in indexes]


def _one(job: _Job, index: int) -> Made:
    """One row: what it makes, or its problems."""
    repo = job.repo
    row = exchange.map_row(
        index + 1,
        job.cells[index],
        job.mapping,
        job.today,
        lambda form: ids.new_item_id(form, os.urandom(5)),
        job.id_fields,
    )
    problems = row.problems or list(_guard_problems(repo, row, job.today))
    if problems:
        return problems
    record = _record(repo, job.case_ids[index], row, job.today)
    try:
        if not job.seal:
            unit.prepare(repo, record, job.today)
            return {}, None
        # The configuration in force was checked once, by import_cases.
        if casekeys.repository_in_layout(repo):
            unit.prepare(repo, record, job.today)
            key = new_case_key(record.case_id)
            made = casekeys.seal_files(repo.schemas, record, {}, key)
            wrapped: dict[str, bytes] | None = casekeys.wrapped(repo, key, record.open)
        else:
            made = {
                ids.record_path(record.case_id): unit.seal(
                    repo, record, None, job.today, trusted=True
                )
            }
            wrapped = None
    except SchemaError as exc:
        return [p.removeprefix("at ") for p in exc.problems or [exc.message]]
    # Written here, on the worker's core: the commit finds the objects written.
    for data in made.values():
        repo.git.hash_blob(data)
    return made, wrapped


# -- export and disclosure -----------------------------------------------------------------


def export_cases(
    repo: Core,
    identities: Sequence[crypto.Identity],
    *,
    fields: Sequence[str] | None,
    recipient: str | None,
    plaintext_reason: str | None,
    today: dt.date,
) -> Sealed:
    """A CSV of ``fields`` for every case the caller can open, sealed to ``recipient``
    (the caller's own by default), or in the clear for a reason code; recorded."""
    repo.check_config_trusted()
    actor = _reader(repo, identities, "exporting cases")
    if plaintext_reason is not None and plaintext_reason not in exchange.PLAINTEXT_REASONS:
        raise UsageError(
            "a plaintext export needs one of the reason codes "
            + ", ".join(exchange.PLAINTEXT_REASONS),
            hint="or leave out --plaintext: the export is then sealed",
        )
    for name in fields or ():
        if name.split(".", 1)[0] not in repo.schemas.field_order:
            raise UsageError(
                f"{name} is not a field of a case",
                hint="name open fields or forms, e.g. --fields state,registration.child.sex",
            )
    committed = repo.committed_records()
    found = bulk.in_pool(
        repo.git,
        lambda case_id, entry: _readable(repo, case_id, entry, identities, actor.recipient),
        sorted(committed),
        committed,
        "Exporting cases",
        repo.progress,
    )
    documents = [doc for doc in found if doc is not None]
    present = [f for f in repo.schemas.sealed_fields if any(f in doc for doc in documents)]
    columns = exchange.export_columns(fields, present)
    table = exchange.write_csv(columns, [exchange.export_row(doc, columns) for doc in documents])
    data = table if plaintext_reason else crypto.seal_file(table, [recipient or actor.recipient])
    event = events.EXPORT.new_id(os.urandom(5))
    trailers = events.details(event, count=len(documents), reason=plaintext_reason or None)
    commit = _export_event(repo, actor, trailers, today, f"export {event}")
    return Sealed(data, event, len(documents), commit)


def disclose(
    repo: Core,
    identities: Sequence[crypto.Identity],
    case_id: str,
    *,
    recipient: str,
    reason: str | None,
    today: dt.date,
) -> Sealed:
    """One case, complete and readable (YAML), sealed to the recipient named; recorded on
    the case."""
    repo.check_config_trusted()
    actor = _reader(repo, identities, "disclosing a case")
    crypto.check_recipient(recipient)
    if reason is not None:
        exchange.check_reason(reason)
    case_id = ids.check_case_id(case_id)
    unit.precheck_clean(repo, ids.record_path(case_id))
    loaded = repo.load(case_id, identities)
    record = loaded.record
    # What the child or family receives is the case as it stands, before this event.
    document = record.document(repo.schemas.field_order)
    data = crypto.seal_file(yamlio.dump(document).encode("utf-8"), [recipient])
    event = events.DISCLOSE.new_id(os.urandom(5))
    entry = events.disclose_entry(event, recipient, reason, today, actor.id)
    record.forms[events.DISCLOSURES] = [*events.entries(record.forms), entry]
    unit.save(
        repo,
        loaded,
        actor,
        today,
        events.DISCLOSE.action,
        None,
        events.details(event, reason=reason),
    )
    return Sealed(data, event, 1, repo.git.head() or "")


def _reader(repo: Core, identities: Sequence[crypto.Identity], action: str) -> Staff:
    actor = repo.actor(identities)
    if actor.role == AUDITOR:
        raise Refused(f"{action} needs someone who reads cases; {actor.id} is an auditor")
    return actor


def _readable(
    repo: Core,
    case_id: str,
    committed: Committed,
    identities: Sequence[crypto.Identity],
    recipient: str,
) -> dict[str, Any] | None:
    """The whole record of a case ``recipient`` can open, else None."""
    try:
        loaded = repo.load_open(case_id, committed)
        if recipient not in repo.expected_recipients(loaded.record.open):
            return None
        repo.open_loaded(loaded, identities)
    except (NotARecipient, CmgitError):
        return None
    return loaded.record.document(repo.schemas.field_order)


def _export_event(
    repo: Core,
    actor: Staff,
    trailers: list[tuple[str, str]],
    today: dt.date,
    subject: str,
) -> str:
    """The commit of a programme-wide event: it changes no file, and says what happened in
    its trailers."""
    # The records it read must be as committed.
    with unit.change(repo, [ids.RECORDS_DIR, ids.RECORDS_DIR + "/"]) as parent:
        return unit.commit(
            repo,
            {},
            subject,
            [("Cmgit-Action", events.EXPORT.action), *trailers, ("Cmgit-Date", today.isoformat())],
            actor,
            parent,
        )
