"""`cmgit config commit`: the programme's own procedure (forms, workflow, SOP pages, the
site's settings), changed in the work tree with the tools people know, validated, and
committed as one signed commit by someone whose role may change every file in it.

Who may change what is `config.EDITABLE`, the table audit and the server hook judge the
commit by. Nothing is committed that would not be in force: the configuration after the
change is read as audit reads it, every schema compiles, and the records stay valid
under it: brought along by the migrations the change adds under schemas/migrations/
(`migrate`), in the same commit, or the change is refused.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import crypto, ids, yamlio
from ..config import (
    EDITABLE,
    MAX_CONFIG_BYTES,
    MKDOCS_FILE,
    PROVIDERS_FILE,
    SCHEMAS_DIR,
    SETTINGS_FILE,
    SITE_DIR,
    STAFF_FILE,
    WORKFLOW_FILE,
    editable_part,
    editors,
    load_yaml,
    read_document,
    schema_documents,
    shown_path,
)
from ..errors import DirtyWorkTree, Refused, UsageError
from ..history import repository_lock
from ..migrations import MIGRATIONS_DIR, Migration
from ..registry import Staff
from ..schema import CASE, FORM_PREFIX, SETTINGS, STAFF, SchemaSet
from ..schema import PROVIDERS as PROVIDERS_SCHEMA
from ..workflow import Workflow
from . import bulk, casekeys, migrate, screening, unit
from .core import Core
from .migrate import INVALID, UNREADABLE

ACTION = "config"
# Where each file that only another command changes is changed.
OTHER_COMMANDS = {
    SETTINGS_FILE: "cmgit settings set KEY VALUE",
    STAFF_FILE: "cmgit staff add, update or deactivate",
}
SHOWN_CASES = 20  # case IDs a dry run lists of the records a change would leave invalid


@dataclass
class ConfigChange:
    """What a configuration change does: files, and for schemas/ the transitions, guards
    and fields it adds, removes or changes, and the records it leaves invalid. Names,
    codes, counts and case IDs only: never a value of a record."""

    actor: str
    files: dict[str, str] = field(default_factory=dict)  # path: added, modified, removed
    workflow: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    fields: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    records_checked: int = 0
    invalid_cases: list[str] = field(default_factory=list)
    # Of each state the new workflow removes, the cases it holds now, by case ID.
    stranded: dict[str, list[str]] = field(default_factory=dict)
    migrations: list[str] = field(default_factory=list)  # the migrations it applies
    record_format: int | None = None  # the records' format after them
    records_migrated: int = 0
    commit: str | None = None
    # The records the migrations bring along, sealed anew: path: file.
    migrated_files: dict[str, bytes | None] = field(default_factory=dict, repr=False)
    # The keys of the cases they bring to sealed entries, wrapped: case ID: keyring files.
    migrated_keys: dict[str, Mapping[str, bytes] | None] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"actor": self.actor, "files": self.files}
        if self.workflow or self.fields or self.records_checked:
            out["workflow"] = self.workflow
            out["fields"] = self.fields
            out["records"] = {
                "checked": self.records_checked,
                "invalid": len(self.invalid_cases),
                "invalid_cases": self.invalid_cases[:SHOWN_CASES],
            }
        if self.stranded:
            out["cases_in_removed_states"] = [
                {"state": state, "count": len(cases), "cases": cases[:SHOWN_CASES]}
                for state, cases in sorted(self.stranded.items())
            ]
        if self.migrations:
            out["migrations"] = self.migrations
            out["record_format"] = self.record_format
            out.setdefault("records", {"checked": 0, "invalid": 0, "invalid_cases": []})
            out["records"]["migrated"] = self.records_migrated
        out["commit"] = self.commit
        return out


def config_commit(
    repo: Core,
    identities: Sequence[crypto.Identity],
    reason: str,
    *,
    today: dt.date,
    dry_run: bool = False,
    brought: Mapping[str, bytes] | None = None,
) -> ConfigChange:
    """Validate the work tree's changes to the configuration and commit them as one
    `config` commit (none if ``dry_run``, or if nothing changed). ``brought``: files
    cmgit itself brings (`cmgit migrate`), committed in place of the work tree's, which
    must then have no change of its own."""
    reason = _check_reason(reason)
    repo.git.check_no_operation()
    start = repo.git.head()
    repo.reload_config()
    repo.check_writer()
    actor = repo.actor(identities)
    result = ConfigChange(actor.id)
    changed = _changed_paths(repo)
    if brought is not None and changed:
        raise DirtyWorkTree(
            f"{shown_path(changed[0])} has a change of its own in the work tree",
            hint="commit it first (cmgit config commit) or undo it, then run the command again",
        )
    changed = sorted(brought) if brought is not None else changed
    if not changed:
        return result
    _check_paths(changed, actor, repo.settings)
    files: dict[str, bytes | None] = (
        {**brought}
        if brought is not None
        else {path: _read_work_file(repo, path) for path in changed}
    )
    result.files = {
        path: "removed"
        if data is None
        else ("modified" if repo.git.path_entry("HEAD", path) else "added")
        for path, data in files.items()
    }
    parts = {editable_part(path) for path in changed}
    if SCHEMAS_DIR in parts:
        _check_schemas(repo, identities, files, result, dry_run=dry_run)
    if MKDOCS_FILE in parts:
        _check_mkdocs(files[MKDOCS_FILE])
    providers = files.get(PROVIDERS_FILE)
    if providers is not None:
        _check_providers(repo, providers)
    if SITE_DIR in parts:
        _check_pages(repo, files)
    if SITE_DIR in parts or MKDOCS_FILE in parts:
        _check_build(repo, today)
    screening.screen_files(repo, identities, files)  # GC: no case's name in the pages
    if dry_run:
        return result
    repo.check_config_trusted(rewriting=[p for p in parts if p is not None])
    in_force = repo.sources_in_force
    with repository_lock(repo.git.git_dir):
        repo.git.finish_pending()
        if repo.git.head() != start:
            raise unit.written_meanwhile(None)
        subject = f"config: {reason}"
        trailers = [("Cmgit-Action", ACTION), ("Cmgit-Reason", reason)]
        trailers += [(migrate.TRAILER, name) for name in result.migrations]
        files.update(result.migrated_files)
        if result.migrated_keys:
            # The keys first: records committed without them could be read by no one.
            casekeys.write_keyring(repo, result.migrated_keys, actor)
        result.commit = unit.commit(repo, files, subject, trailers, actor, start)
        if start is not None:
            repo.own_config_commit(start, result.commit, in_force)
    return result


def _check_reason(reason: str) -> str:
    """The reason goes into the commit message, which never holds free text (SPEC
    section 5): a code, like every other reason cmgit records."""
    if ids.REASON_RE.fullmatch(reason):
        return reason
    raise UsageError(
        "the reason is a code of lower-case letters, digits and _ (up to 48), such as "
        "sop_typo_fix or new_referral_field",
        hint="commit messages carry codes only; say more in the SOP page or to the team",
    )


# -- what changed, and who may change it -------------------------------------------------


def _changed_paths(repo: Core) -> list[str]:
    """Every path whose work-tree file differs from HEAD (staged or not), and every new
    file git does not ignore. Renames are a removal and an addition."""
    tracked = repo.git.run("diff", "--name-only", "-z", "--no-renames", "HEAD", "--")
    untracked = repo.git.run("ls-files", "-z", "--others", "--exclude-standard")
    found = {
        item.decode("utf-8", "surrogateescape")
        for item in (*tracked.split(b"\0"), *untracked.split(b"\0"))
        if item
    }
    return sorted(found)


def _check_paths(paths: Sequence[str], actor: Staff, settings: Mapping[str, Any]) -> None:
    """Refuse anything but the configuration, and any part the actor's role may not
    change, naming the first such file and who may."""
    for path in paths:
        shown = shown_path(path)
        if shown != path:
            raise Refused(
                "a changed file's name holds characters the configuration never uses",
                hint="rename or remove it (git status lists it), then run the command again",
            )
        if path.startswith(ids.RECORDS_DIR + "/"):
            raise DirtyWorkTree(
                f"{path} was changed outside cmgit; a configuration commit never carries records",
                hint=f"restore it with: git checkout -- {path} (records change through the "
                "case commands)",
            )
        if path in OTHER_COMMANDS:
            raise Refused(
                f"{path} is not changed by cmgit config commit",
                hint=f"undo the edit (git checkout -- {path}) and use {OTHER_COMMANDS[path]}",
            )
        part = editable_part(path)
        if part is None:
            raise Refused(
                f"{path} is not part of the configuration cmgit config commit commits "
                f"({SCHEMAS_DIR}/, {MKDOCS_FILE}, {PROVIDERS_FILE}, {SITE_DIR}/)",
                hint=f"remove or undo the change to {path}, then run the command again",
            )
    for path in paths:
        part = editable_part(path)
        assert part is not None
        allowed = editors(part, settings)
        if actor.role not in allowed:
            setting = EDITABLE[part]
            who = (
                "programme managers change it"
                if setting is None
                else f"the roles in the setting {setting} ({', '.join(allowed)}) change it"
            )
            raise Refused(
                f"{actor.id} ({actor.role}) may not change {path}: {who}",
                hint="undo the change, or ask someone in one of those roles to commit it",
            )


def _read_work_file(repo: Core, path: str) -> bytes | None:
    """A changed file's bytes, None if removed; a link or special file is refused, not
    followed, and so is one larger than the configuration takes."""
    full = repo.root / path
    try:
        info = os.lstat(full)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise Refused(
            f"{path} is a link or a special file", hint="the configuration holds regular files"
        )
    limit = _site_limit() if path.startswith(SITE_DIR + "/") else MAX_CONFIG_BYTES
    if info.st_size > limit:
        raise Refused(f"{path} is larger than the configuration takes ({limit} bytes)")
    fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise Refused(f"{path} is larger than the configuration takes ({limit} bytes)")
    return data


def _site_limit() -> int:
    from ..site.source import MAX_SITE_FILE

    return MAX_SITE_FILE


# -- validation ------------------------------------------------------------------------


def _check_providers(repo: Core, data: bytes) -> None:
    """The service directory parses and matches its schema, where the repository has
    one (a repository made before it gets it with `cmgit migrate`)."""
    schema = repo.schemas.schemas.get(PROVIDERS_SCHEMA)
    if schema is None:
        yamlio.load(data, what=PROVIDERS_FILE, max_bytes=MAX_CONFIG_BYTES)
        return
    doc = load_yaml(data, repo.schemas, schema, what=PROVIDERS_FILE, limit=MAX_CONFIG_BYTES)
    repo.schemas.validate(doc, PROVIDERS_SCHEMA, what=PROVIDERS_FILE)


def _check_mkdocs(data: bytes | None) -> None:
    if data is None:
        raise Refused(f"the site is built with {MKDOCS_FILE}: it cannot be removed")
    from ..site.publish import check_mkdocs_config

    check_mkdocs_config(data)


def _check_pages(repo: Core, files: Mapping[str, bytes | None]) -> None:
    """A page or asset of the site is published to all staff: nothing that looks like a
    record, an encrypted block or a case number may be in it (the site build's own scan,
    run before the commit instead of at the next build)."""
    from ..site.scan import scan_file
    from ..site.source import check_site_file

    case_ids = set(repo.case_ids())
    for path, data in files.items():
        if data is None or not path.startswith(SITE_DIR + "/"):
            continue
        check_site_file(path, data)
        problems = scan_file(path, data, case_ids)
        if problems:
            raise Refused(
                f"{path} holds what the site must never publish",
                problems=problems,
                hint=f"a copy of a record or of an encrypted block has no place in {SITE_DIR}/",
            )


def _check_build(repo: Core, today: dt.date) -> None:
    """Every page must build: the work tree's site is built as a preview into a temporary
    folder, removed after, with the output scan of every build."""
    from ..audit import config_in_force
    from ..site.publish import build

    with tempfile.TemporaryDirectory(prefix="cmgit-config-") as folder:
        build(
            repo.root,
            Path(folder) / "site",
            today=today,
            in_force=config_in_force,
            preview=True,
            progress=repo.progress,
        )


def _check_schemas(
    repo: Core,
    identities: Sequence[crypto.Identity],
    files: Mapping[str, bytes | None],
    result: ConfigChange,
    *,
    dry_run: bool,
) -> None:
    """Read the proposed schemas/ as audit will read it, compile every schema, check the
    settings and staff registry against it, say what it changes, and check every record
    against it with the programme manager's key: a record it would leave invalid refuses
    the change (a dry run counts them)."""
    head = repo.git.head()
    assert head is not None
    committed = repo.git.files_under(head, SCHEMAS_DIR)
    paths = sorted({*committed, *(p for p in files if p.startswith(SCHEMAS_DIR + "/"))})
    kept = [p for p in paths if p not in files]
    proposed = {**repo.git.read_paths(head, kept), **files}
    wanted = {p: data for p, data in proposed.items() if data is not None}
    # Cases in a state the new workflow no longer has would be stranded: found first, from
    # the open fields without a key, before the workflow's own checks (which keep every
    # canonical state) and before any record is opened.
    raw = yamlio.load(
        wanted.get(WORKFLOW_FILE) or b"{}", what="workflow data", max_bytes=MAX_CONFIG_BYTES
    )
    states = raw.get("states") if isinstance(raw, dict) else None
    gone = set(repo.workflow.states) - set(states) if isinstance(states, dict) else set()
    state_at, case_at = (repo.schemas.open_fields.index(f) for f in ("state", "case_id"))
    for row in sorted(repo.open_rows() if gone else (), key=lambda row: str(row[case_at])):
        if row[state_at] in gone:
            result.stranded.setdefault(row[state_at], []).append(row[case_at])
    if result.stranded:
        if dry_run:
            return  # it lists them; the rest needs a workflow that keeps its states
        raise Refused(
            "the change removes states that still hold cases: "
            + ", ".join(f"{s} ({len(c)} case(s))" for s, c in sorted(result.stranded.items())),
            hint="keep the states; cases are never left in a state the workflow no longer "
            "has (cmgit config commit --dry-run lists them)",
        )
    docs, flow = schema_documents(wanted)
    schemas = SchemaSet(docs)
    schemas.check_compiles()
    workflow = Workflow(flow)
    documents = repo.git.read_paths(head, [SETTINGS_FILE, STAFF_FILE])
    read_document(documents[SETTINGS_FILE], schemas, SETTINGS, SETTINGS_FILE)
    read_document(documents[STAFF_FILE], schemas, STAFF, STAFF_FILE)
    steps = migrate.pending(repo, proposed, schemas)
    result.workflow = workflow_changes(repo.workflow, workflow)
    result.fields = field_changes(repo.schemas, schemas, migrate.renamed(steps))
    result.migrations = [migration.name for migration in steps]
    result.record_format = steps[-1].format if steps else None
    outcomes = _check_records(repo, identities, schemas, steps, seal=not dry_run)
    result.records_checked = len(outcomes)
    result.records_migrated = sum(o.migrated for o in outcomes)
    result.invalid_cases = [o.case_id for o in outcomes if o.outcome == INVALID]
    result.migrated_files = {p: d for o in outcomes for p, d in o.files.items()}
    result.migrated_keys = {o.case_id: o.keyring for o in outcomes if o.keyring is not None}
    unreadable = [o.case_id for o in outcomes if o.outcome == UNREADABLE]
    if unreadable:
        raise Refused(
            f"{len(unreadable)} record(s) could not be opened to check them against the "
            "new schemas",
            problems=unreadable[:SHOWN_CASES],
            hint="run cmgit validate; a programme manager who can open every case commits "
            "changes of the schemas",
        )
    if result.invalid_cases and not dry_run:
        after_them = f" after {', '.join(result.migrations)}" if result.migrations else ""
        raise Refused(
            f"the change would leave {len(result.invalid_cases)} of "
            f"{result.records_checked} record(s) invalid{after_them}",
            problems=result.invalid_cases[:SHOWN_CASES],
            hint=f"bring the records along with a migration in {MIGRATIONS_DIR}/ (see the "
            "coordinators' guide), or keep the change compatible: a new field optional, no "
            "field or value removed",
        )


def _check_records(
    repo: Core,
    identities: Sequence[crypto.Identity],
    schemas: SchemaSet,
    steps: Sequence[Migration],
    *,
    seal: bool,
) -> list[migrate.Outcome]:
    """Each record at HEAD, opened, brought through the migrations ``steps`` and checked
    against ``schemas``: open fields and sealed forms, all of it, on every core; sealed
    anew where a migration changed it, if ``seal``."""
    committed = repo.committed_records()
    return bulk.in_pool(
        repo.git,
        lambda case_id, entry: migrate.bring_along(
            repo, case_id, entry, identities, schemas, steps, seal=seal
        ),
        sorted(committed),
        committed,
        "Migrating cases" if steps and seal else "Checking cases against the new schemas",
        repo.progress,
    )


# -- what a change does, in names and codes ----------------------------------------------


def workflow_changes(old: Workflow, new: Workflow) -> dict[str, dict[str, list[str]]]:
    """Transitions and guards added, removed or changed, by id and code."""
    out = {}
    for name, before, after in (
        ("transitions", old.transitions, new.transitions),
        ("guards", old.guards, new.guards),
        ("events", old.events, new.events),
    ):
        diff = {
            "added": sorted(set(after) - set(before)),
            "removed": sorted(set(before) - set(after)),
            "changed": sorted(k for k in set(before) & set(after) if before[k] != after[k]),
        }
        if any(diff.values()):
            out[name] = diff
    return out


def field_changes(
    old: SchemaSet, new: SchemaSet, renamed: Sequence[str] = ()
) -> dict[str, dict[str, list[str]]]:
    """Fields added to or removed from the case record and each form, by schema id,
    each field as its dotted path; and schemas added or removed whole. ``renamed``: the
    fields migrations give a new path ("old -> new", over the whole record)."""
    out = {}
    for schema_id in sorted(set(old.schemas) | set(new.schemas)):
        if schema_id != CASE and not schema_id.startswith(FORM_PREFIX):
            continue
        before = _field_paths(old.schemas.get(schema_id, {}))
        after = _field_paths(new.schemas.get(schema_id, {}))
        diff = {"added": sorted(after - before), "removed": sorted(before - after)}
        moved = [change for change in renamed if _schema_of(change, new) == schema_id]
        if moved:
            diff["renamed"] = moved
        if any(diff.values()):
            out[schema_id] = diff
    return out


def _schema_of(change: str, schemas: SchemaSet) -> str:
    """The schema a renamed field ("form.field -> ...") belongs to: its form's, or the
    case record's for an open field."""
    top = change.partition(".")[0].partition(" ")[0]
    prop = schemas.case_properties.get(top) or {}
    ref = prop.get("$ref") or (prop.get("items") or {}).get("$ref")
    return str(ref) if isinstance(ref, str) and "." in change.split(" ")[0] else CASE


def _field_paths(schema: Mapping[str, Any], prefix: str = "") -> set[str]:
    """The dotted path of every property a schema declares, through nested objects and
    the items of lists (names only; a name of odd characters counts as one)."""
    found: set[str] = set()
    for name, sub in (schema.get("properties") or {}).items():
        path = prefix + (name if ids.REASON_RE.fullmatch(str(name)) else "?")
        found.add(path)
        if isinstance(sub, Mapping):
            found |= _field_paths(sub, path + ".")
            items = sub.get("items")
            if isinstance(items, Mapping):
                found |= _field_paths(items, path + ".")
    return found
