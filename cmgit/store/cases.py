"""Case commands: open a case, record a form, edit the forms, move a case through the
workflow and give it another key caseworker.

Each is one unit of work: load the case, let the workflow (`cmgit.workflow`, pure) make
the change and judge it, then seal and commit it (`unit`). A refused command changes
nothing.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import crypto, ids, packages, trail, workflow, yamlio
from ..errors import (
    CmgitError,
    InvalidRecord,
    ParseError,
    Refused,
    SchemaError,
    UsageError,
    nearest_hint,
)
from ..guards import CASELOAD, KEY_WORKER, RECORD_SCHEMA
from ..records import Record
from ..registry import CASEWORKER, Staff
from ..schema import CASE
from ..workflow import Failure, Transition
from . import unit
from .core import Core
from .unit import check_item_ids

MAX_FORM_BYTES = 1024 * 1024
ITEM_ID = "urn:cmgit:schema:common#/$defs/item_id"


@dataclass
class MoveResult:
    case_id: str
    transition: Transition | None
    source: str
    target: str
    warnings: list[Failure]


def new_case(
    repo: Core,
    identities: Sequence[crypto.Identity],
    form_data: bytes,
    *,
    today: dt.date,
    caseworker: str | None = None,
    team: str | None = None,
) -> str:
    repo.check_config_trusted()
    actor = repo.actor(identities)
    forms = read_form_file(repo, form_data, allowed=workflow.NEW_CASE_FORMS)
    if workflow.NEW_CASE_FORMS[0] not in forms:
        raise UsageError(f"the form file needs an {workflow.NEW_CASE_FORMS[0]} form")
    return create_case(repo, actor, forms, today=today, caseworker=caseworker, team=team)


def create_case(
    repo: Core,
    actor: Staff,
    forms: dict[str, Any],
    *,
    today: dt.date,
    caseworker: str | None = None,
    team: str | None = None,
    received: str | None = None,
) -> str:
    """A new case in the first state with ``forms`` (read and typed already), made by
    ``actor``: `new`, and a case transferred in with the package it came with (``received``:
    the package's received tag, kept open so that the package is received once)."""
    worker_id = caseworker or (actor.id if actor.role == CASEWORKER else None)
    if worker_id is None:
        raise UsageError("name the key caseworker with --caseworker ID")
    worker = repo.registry.get(ids.check_staff_id(worker_id))
    if not worker.active or worker.role != CASEWORKER:
        raise Refused(f"{worker.id} is not an active caseworker (guard {KEY_WORKER})")
    case_team = ids.check_team_id(team) if team else worker.team
    if case_team != worker.team:
        raise UsageError(f"{worker.id} works in team {worker.team}, not {case_team}")
    while True:
        case_id = ids.new_case_id(repo.settings["case_id_prefix"], os.urandom(5))
        if repo.git.blob_id("HEAD", ids.record_path(case_id)) is None:
            break
    path = ids.record_path(case_id)
    denied = repo.workflow.permission(
        repo.workflow.events["identification"].by,
        actor.role,
        actor.id,
        actor.team,
        {"team": case_team, "caseworker": worker.id},
        "creating a case",
    )
    if denied:
        raise Refused(f"refused: {denied}")
    open_fields: dict[str, Any] = {name: None for name in repo.schemas.open_fields}
    open_fields.update(
        case_id=case_id,
        version=1,
        episode=1,
        team=case_team,
        caseworker=worker.id,
        immediate_risk=False,
        comprehensive_assessment_required=False,
    )
    workflow.enter_state(open_fields, repo.workflow.initial_state, today)
    forms["assignment"] = [
        {
            "assignment_id": item_ids(repo)("assignment", ()),
            "staff_id": worker.id,
            "role_on_case": "key_caseworker",
            "from": today.isoformat(),
            "reason": "initial",
        }
    ]
    record = Record(open_fields, forms)
    with unit.change(repo, [path]) as parent:
        files = unit.seal_new(repo, record, actor, today)
        unit.commit(
            repo,
            files,
            f"{case_id}: new -> {repo.workflow.initial_state}",
            [
                ("Cmgit-Case", case_id),
                ("Cmgit-Action", "new"),
                ("Cmgit-To", repo.workflow.initial_state),
                *([(packages.RECEIVED_TRAILER, received)] if received else []),
                ("Cmgit-Version", "1"),
                ("Cmgit-Date", today.isoformat()),
            ],
            actor,
            parent,
        )
    return case_id


def show(repo: Core, identities: Sequence[crypto.Identity], case_id: str) -> dict[str, Any]:
    repo.actor(identities)
    return repo.load(case_id, identities).record.document(repo.schemas.field_order)


def record_form(
    repo: Core,
    identities: Sequence[crypto.Identity],
    case_id: str,
    form: str,
    form_data: bytes,
    *,
    today: dt.date,
    receipt: str | None = None,
) -> str:
    """Add or update one form (an event: no change of state); returns its item id.
    ``receipt``: the receipt code of a referral or transfer package, as proof that the
    receiving agency opened it (`cmgit.packages.with_receipt`)."""
    repo.check_config_trusted()
    actor = repo.actor(identities)
    event = repo.workflow.events.get(form)
    if event is None:
        known = form in repo.schemas.sealed_fields
        if known:
            raise UsageError(
                f"the {form} form is recorded with a move or an assignment, not on its own",
                hint="see cmgit record --help for the forms",
            )
        raise UsageError(
            "unknown form", hint=nearest_hint(form, list(repo.workflow.events), "forms")
        )
    item = read_form_file(repo, form_data, allowed=(form,), exactly=True)[form]
    unit.precheck_clean(repo, ids.record_path(case_id))
    loaded = repo.load(case_id, identities)
    outcome = workflow.record_event(
        _whole(loaded.record),
        event,
        item,
        actor,
        repo.settings,
        today,
        flow=repo.workflow,
        schema=repo.schemas,
        staff=repo.registry,
        check=_record_schema(repo),
        new_id=item_ids(repo),
    )
    if outcome.refused:
        raise outcome.refusal(f"recording {form}", case_id)
    try:
        forms = packages.with_receipt(
            loaded.record.forms, outcome.forms, form, outcome.item_id, receipt, today
        )
    except CmgitError as exc:
        exc.case_id = case_id
        raise
    loaded.record.forms = forms
    return unit.save(repo, loaded, actor, today, "record", outcome.item_id, [("Cmgit-Form", form)])


def edit(
    repo: Core,
    identities: Sequence[crypto.Identity],
    case_id: str,
    editor: Callable[[str], str | None],
    retry: Callable[[CmgitError], bool],
    *,
    today: dt.date,
) -> bool:
    """Let a person change the sealed forms in an editor; False when nothing changed.

    ``editor`` gets the forms as YAML and returns the edited text, or None to abort.
    An invalid edit is refused; ``retry`` decides whether to re-open the editor on
    the person's text (the command line asks them) or to give up, changing nothing.
    """
    repo.check_config_trusted()
    actor = repo.actor(identities)
    unit.precheck_clean(repo, ids.record_path(case_id))
    loaded = repo.load(case_id, identities)
    record = loaded.record
    workflow.refuse_if_closed(record.open["state"], case_id)
    editors = {role for event in repo.workflow.events.values() for role in event.by}
    denied = repo.workflow.permission(
        editors, actor.role, actor.id, actor.team, record.open, "editing forms"
    )
    if denied:
        raise Refused(f"refused: {denied}", case_id=case_id)
    editable = repo.schemas.editable_fields
    system = {f: record.forms[f] for f in record.forms if f not in editable}
    order = [f for f in editable if f in record.forms]
    before = yamlio.dump({f: record.forms[f] for f in order}) if order else "{}\n"
    text = before
    while True:
        edited = editor(text)
        if edited is None or edited == before:
            return False
        try:
            forms = read_form_file(
                repo,
                edited.encode("utf-8"),
                allowed=editable,
                what="edited forms",
            )
            forms.update(system)
            dropped = [f for f in record.forms if f not in forms]
            if dropped:
                raise SchemaError(
                    "an edit cannot remove whole forms: " + ", ".join(dropped),
                    hint="put them back, or abort by leaving the editor without saving",
                )
            candidate = Record(dict(record.open), forms)
            repo.schemas.validate(
                candidate.document(repo.schemas.field_order),
                CASE,
                what="case record",
                case_id=case_id,
            )
            check_item_ids(candidate, repo.schemas)
            break
        except InvalidRecord as exc:
            exc.case_id = case_id
            if not retry(exc):
                raise
            text = edited
    if forms == record.forms:
        return False
    record.forms = forms
    unit.save(repo, loaded, actor, today, "edit", None, [])
    return True


def move(
    repo: Core,
    identities: Sequence[crypto.Identity],
    case_id: str,
    target: str,
    *,
    today: dt.date,
    reason: str | None = None,
    form_data: bytes | None = None,
    override: str | None = None,
) -> MoveResult:
    """One workflow transition, guarded; ``form_data`` merges one form in the same commit."""
    repo.check_config_trusted()
    actor = repo.actor(identities)
    if target not in workflow.STATES:
        raise UsageError("unknown state", hint=nearest_hint(target, workflow.STATES, "states"))
    if reason is not None:
        ids.check_reason(reason)
    recordable = [*repo.workflow.events, workflow.REOPEN_FORM]
    forms = read_form_file(repo, form_data, allowed=recordable) if form_data is not None else {}
    unit.precheck_clean(repo, ids.record_path(case_id))
    loaded = repo.load(case_id, identities)
    source = loaded.record.open["state"]
    transition = repo.workflow.transition_for(source, target, reason, case_id=case_id)
    codes = trail.expected_guards(repo.workflow, transition, reason)
    override_reason = trail.override_reason(repo.workflow, codes, override)
    caseload = caseloads(repo, exclude=case_id) if CASELOAD in transition.guards else None
    outcome = workflow.transition(
        _whole(loaded.record),
        transition,
        actor,
        repo.settings,
        today,
        flow=repo.workflow,
        schema=repo.schemas,
        staff=repo.registry,
        reason=reason,
        forms=forms,
        override=override,
        caseload=caseload,
        check=_record_schema(repo),
        new_id=item_ids(repo),
    )
    if outcome.refused:
        raise outcome.refusal(f"move {source} -> {target} ({transition.id})", case_id)
    loaded.record.open, loaded.record.forms = outcome.open, outcome.forms
    trailers = [
        ("Cmgit-Transition", transition.id),
        ("Cmgit-From", source),
        ("Cmgit-To", target),
    ]
    if reason:
        trailers.append(("Cmgit-Reason", reason))
    trailers += [("Cmgit-Form", name) for name in forms]
    if transition.four_eyes:
        trailers.append((trail.AUTHORISER, actor.id))
        proposer = _proposer(outcome.forms, transition)
        # The closure form names its proposer: recorded where that is other staff.
        if proposer != actor.id and proposer in repo.registry.staff:
            trailers.append((trail.PROPOSER, str(proposer)))
    trailers += trail.guard_trailers(outcome.results, override_reason)
    unit.save(
        repo,
        loaded,
        actor,
        today,
        "move",
        None,
        trailers,
        subject=f"{case_id}: {source} -> {target}",
    )
    return MoveResult(case_id, transition, source, target, outcome.warnings)


def assign(
    repo: Core,
    identities: Sequence[crypto.Identity],
    case_id: str,
    staff_id: str,
    *,
    today: dt.date,
    reason: str | None = None,
    override: str | None = None,
) -> MoveResult:
    """Reassign the key caseworker (supervisor or programme manager) and re-encrypt."""
    repo.check_config_trusted()
    actor = repo.actor(identities)
    reason = repo.workflow.check_assignment_reason(reason)
    worker = repo.registry.get(ids.check_staff_id(staff_id))
    unit.precheck_clean(repo, ids.record_path(case_id))
    codes = trail.expected_guards(repo.workflow, None, reason)
    override_reason = trail.override_reason(repo.workflow, codes, override)
    loaded = repo.load(case_id, identities)
    previous = loaded.record.open["caseworker"]
    outcome = workflow.reassign(
        _whole(loaded.record),
        worker,
        actor,
        repo.settings,
        today,
        flow=repo.workflow,
        schema=repo.schemas,
        staff=repo.registry,
        reason=reason,
        override=override,
        caseload=caseloads(repo, exclude=case_id),
        check=_record_schema(repo),
        new_id=item_ids(repo),
    )
    if outcome.refused:
        raise outcome.refusal("reassignment", case_id)
    loaded.record.open, loaded.record.forms = outcome.open, outcome.forms
    trailers = [
        ("Cmgit-Staff", worker.id),
        ("Cmgit-Reason", reason),
        (trail.PREVIOUS, previous),
        (trail.AUTHORISER, actor.id),
        *trail.guard_trailers(outcome.results, override_reason),
    ]
    unit.save(
        repo,
        loaded,
        actor,
        today,
        "assign",
        None,
        trailers,
        subject=f"{case_id}: assign {worker.id}",
    )
    state = outcome.open["state"]
    return MoveResult(case_id, None, state, state, [])


def caseloads(repo: Core, exclude: str | None = None) -> dict[str, int]:
    """Open cases per caseworker, from the open fields at HEAD (no key needed)."""
    at = {name: n for n, name in enumerate(repo.schemas.open_fields)}
    case_at, state_at, worker_at = at["case_id"], at["state"], at["caseworker"]
    open_states = repo.workflow.caseload_states
    return dict(
        Counter(
            values[worker_at]
            for values in repo.open_rows()
            if values[state_at] in open_states and values[case_at] != exclude
        )
    )


def read_form_file(
    repo: Core,
    data: bytes,
    *,
    allowed: Sequence[str],
    exactly: bool = False,
    what: str = "form file",
) -> dict[str, Any]:
    """A form file (SPEC section 4): one top-level key per form, typed by its schema."""
    doc = yamlio.load(data, what=what, max_bytes=MAX_FORM_BYTES)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ParseError(f"{what}: expected form names at the top level, line 1, column 1")
    unknown = [k for k in doc if k not in allowed]
    if unknown:
        named = [k for k in unknown if ids.REASON_RE.fullmatch(k)]
        raise SchemaError(
            f"{what} holds forms that do not belong here"
            + (f": {', '.join(named)}" if named else ""),
            hint=nearest_hint(str(unknown[0]), allowed, "allowed"),
        )
    if exactly and len(doc) != 1:
        raise UsageError(f"{what} must hold exactly the form {allowed[0]}")
    props = repo.schemas.case_properties
    typed = {}
    for name, value in doc.items():
        schema = props[name]
        # A form file holds one item of a repeated form; `edit` holds whole lists.
        if "items" in schema and not isinstance(value, list):
            schema = schema["items"]
        typed[name] = repo.schemas.coerce(value, schema, what=what)
    return typed


def item_ids(repo: Core) -> workflow.NewItemId:
    """How this repository makes the id of a new item: the form name and 8 random
    Crockford characters (SPEC section 9), or, where the repository's schemas are older
    and admit only sequential ids, the next number, as cmgit did before."""
    if not repo.schemas.holds("item-id", {"$ref": ITEM_ID}, ids.new_item_id("note", bytes(5))):
        return ids.next_item_id

    def random_id(form: str, taken: Collection[str]) -> str:
        while (item_id := ids.new_item_id(form, os.urandom(ids.ENTROPY_BYTES))) in taken:
            pass
        return item_id

    return random_id


def _proposer(forms: Mapping[str, Any], transition: workflow.Transition) -> Any:
    """Who proposed the closure a move authorises, as its closure form keeps it."""
    closure = forms.get("closure")
    if workflow.CLOSE not in transition.effects or not isinstance(closure, Mapping):
        return None
    return closure.get("proposed_by")


def _whole(record: Record) -> dict[str, Any]:
    """A record's open fields and sealed forms in one mapping, as the workflow takes it."""
    return {**record.open, **record.forms}


def _record_schema(repo: Core) -> workflow.Check:
    """GB: the whole record after a change validates against the case schema."""

    def check(doc: dict[str, Any]) -> None:
        try:
            repo.schemas.validate(doc, CASE, what="case record", case_id=str(doc["case_id"]))
        except SchemaError as exc:
            exc.message = f"{RECORD_SCHEMA}: {exc.message}"
            raise

    return check
