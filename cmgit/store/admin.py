"""Staff and settings administration, by a programme manager: each change is one commit
of the registry or settings together with every record whose recipients it changes,
re-encrypted for the new recipients.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from .. import crypto, ids, records, signing, yamlio
from ..config import SETTINGS_FILE, STAFF_FILE, load_yaml
from ..errors import NotARecipient, Refused, UsageError
from ..keyring import ref
from ..registry import CASEWORKER, PROGRAMME_MANAGER, Registry, Staff
from ..schema import SETTINGS, STAFF
from . import casekeys, unit
from .core import Core


def _begin(
    repo: Core, identities: Sequence[crypto.Identity], action: str
) -> tuple[Staff, str | None]:
    """The programme manager acting, and the commit the change is worked out on, its
    configuration read afresh: `_reconfigure` writes nothing if another command has
    committed since."""
    start = repo.git.head()
    repo.reload_config()
    repo.check_writer()
    return repo.acting(identities, PROGRAMME_MANAGER, action=action), start


def staff_add(repo: Core, identities: Sequence[crypto.Identity], member: Staff) -> int:
    actor, start = _begin(repo, identities, "adding staff")
    if member.signing_key:
        member = replace(member, signing_key=signing.check_public_key(member.signing_key))
    if member.id in repo.registry.staff:
        raise UsageError(f"staff member {member.id} exists", hint="use cmgit staff update")
    clash = [m.id for m in repo.registry.staff.values() if m.recipient == member.recipient]
    if clash:
        raise UsageError(f"that recipient already belongs to {clash[0]}")
    return _change_registry(
        repo, identities, actor, repo.registry.with_member(member), "add", member.id, start
    )


def staff_update(
    repo: Core, identities: Sequence[crypto.Identity], staff_id: str, **changes: Any
) -> int:
    actor, start = _begin(repo, identities, "changing staff")
    current = repo.registry.get(staff_id)
    changes = {k: v for k, v in changes.items() if v is not None}
    compromised_on = changes.pop("key_compromised_on", None)
    if changes.get("signing_key"):
        changes["signing_key"] = signing.check_public_key(changes["signing_key"])
    if not changes and not compromised_on:
        raise UsageError(
            "nothing to change", hint="give --team, --role, --recipient or --signing-key"
        )
    registry = repo.registry
    if compromised_on:
        registry = registry.with_key_compromised(staff_id, compromised_on)
    if "recipient" in changes:
        clash = [
            m.id
            for m in repo.registry.staff.values()
            if m.recipient == changes["recipient"] and m.id != staff_id
        ]
        if clash:
            raise UsageError(f"that recipient already belongs to {clash[0]}")
    if ("team" in changes or "role" in changes) and current.role == CASEWORKER:
        held = _held_cases(repo, staff_id)
        if held:
            raise Refused(
                f"{staff_id} still holds {len(held)} case(s)",
                hint="reassign them first (cmgit assign)",
            )
    return _change_registry(
        repo,
        identities,
        actor,
        registry.updated(staff_id, **changes),
        "update",
        staff_id,
        start,
    )


def staff_deactivate(repo: Core, identities: Sequence[crypto.Identity], staff_id: str) -> int:
    actor, start = _begin(repo, identities, "deactivating staff")
    member = repo.registry.get(staff_id)
    if not member.active:
        raise UsageError(f"{staff_id} is already deactivated")
    if member.id == actor.id:
        raise Refused("you cannot deactivate yourself", hint="ask another programme manager")
    held = _held_cases(repo, staff_id)
    if held:
        raise Refused(
            f"{staff_id} still holds {len(held)} open case(s)",
            hint="reassign them first (cmgit assign)",
        )
    registry = repo.registry.updated(staff_id, active=False)
    if not registry.active(PROGRAMME_MANAGER):
        raise Refused("the last programme manager cannot be deactivated")
    return _change_registry(repo, identities, actor, registry, "deactivate", staff_id, start)


def _held_cases(repo: Core, staff_id: str) -> list[str]:
    """The open cases ``staff_id`` holds, from one keyless read of every record's open
    fields (remembered by object id), not a file read per case."""
    order = repo.schemas.open_fields
    case_at, worker_at, state_at = (order.index(f) for f in ("case_id", "caseworker", "state"))
    held_states = repo.workflow.held_states
    return [
        str(row[case_at])
        for row in repo.open_rows()
        if row[worker_at] == staff_id and row[state_at] in held_states
    ]


def _change_registry(
    repo: Core,
    identities: Sequence[crypto.Identity],
    actor: Staff,
    registry: Registry,
    verb: str,
    staff_id: str,
    start: str | None,
) -> int:
    doc = registry.to_doc()
    repo.schemas.validate(doc, STAFF, what="staff registry")
    data = yamlio.dump(doc).encode("utf-8")
    return _reconfigure(
        repo,
        identities,
        actor,
        {STAFF_FILE: data},
        registry,
        repo.settings,
        f"staff: {verb} {staff_id}",
        [("Cmgit-Action", f"staff-{verb}"), ("Cmgit-Staff", staff_id)],
        start,
    )


def settings_set(repo: Core, identities: Sequence[crypto.Identity], key: str, value: str) -> int:
    actor, start = _begin(repo, identities, "changing settings")
    props = repo.schemas.schemas[SETTINGS]["properties"]
    if key not in props:
        named = f" '{key}'" if ids.REASON_RE.fullmatch(key) else ""
        raise UsageError(f"unknown setting{named}", hint="see cmgit settings show")
    typed = load_yaml(
        value.encode("utf-8"), repo.schemas, props[key], what="setting value", limit=64 * 1024
    )
    settings = {**repo.settings, key: typed}
    repo.schemas.validate(settings, SETTINGS, what="settings")
    if settings == repo.settings:
        raise UsageError(f"{key} already has that value")
    return _reconfigure(
        repo,
        identities,
        actor,
        {SETTINGS_FILE: yamlio.dump(settings).encode("utf-8")},
        repo.registry,
        settings,
        f"settings: set {key}",
        [("Cmgit-Action", "settings-set"), ("Cmgit-Setting", key)],
        start,
    )


def _reconfigure(
    repo: Core,
    identities: Sequence[crypto.Identity],
    actor: Staff,
    files: dict[str, bytes | None],
    registry: Registry,
    settings: Mapping[str, Any],
    subject: str,
    trailers: list[tuple[str, str]],
    start: str | None,
) -> int:
    """Commit a registry or settings change together with every record whose
    recipients it changes, re-encrypted; their open fields stay as they were. ``start``
    is the commit the change was worked out on: if another command has committed since,
    nothing read here may be written back."""
    repo.check_config_trusted(rewriting=files)
    todo = []
    rewrap = []  # format 2: the keyring changes, the records do not
    order = repo.schemas.open_fields
    key_wrapping_changes = casekeys.wrapping_changes(repo, registry, settings)
    # Chosen from the open fields of every record as one keyless read, remembered by
    # object id: a change that touches 25 cases of 100,000 opens those 25 files only.
    for row in repo.open_rows():
        open_fields = dict(zip(order, row, strict=True))
        if casekeys.in_layout(repo.config, open_fields):
            if key_wrapping_changes(open_fields):
                rewrap.append(open_fields)
            continue
        before = repo.expected_recipients(open_fields)
        after = registry.recipients_for(open_fields["team"], open_fields["caseworker"], settings)
        if before != after:
            todo.append((repo.load_open(str(open_fields["case_id"])), after))
    with unit.change(repo, [*files, *(loaded.path for loaded, _ in todo)]) as parent:
        if parent != start:
            raise unit.written_meanwhile(None)
        for loaded, after in todo:
            try:
                plaintext = repo.cipher.open(loaded.armored, identities)
            except NotARecipient:
                raise Refused(
                    "this change re-encrypts cases you cannot open",
                    case_id=loaded.record.case_id,
                    hint="a programme manager who can open every case must run it",
                ) from None
            files[loaded.path] = records.render_file(
                loaded.record.open,
                repo.schemas.open_fields,
                repo.cipher.seal(plaintext, after),
            )
        shards = ref.heads(repo.git) if rewrap else {}
        keyring = {
            str(fields["case_id"]): casekeys.rewrapped(
                repo, fields, identities, registry, settings, shards
            )
            for fields in rewrap
        }
        if keyring:
            casekeys.write_keyring(repo, keyring, actor)
        unit.commit(repo, files, subject, trailers, actor, parent)
    return len(todo) + len(rewrap)
