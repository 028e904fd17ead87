"""The end of a case key and its recovery: `purge` (erasure at the end of retention, four
eyes) and `recover_key` (k of n custodians together), for records kept as sealed entries.

A purge destroys every key of the case: the keyring is replaced without it (which prunes
the replaced objects at once) before the commit that removes the case's entries, so a
purge that fails half-way has already made the case unreadable, never the reverse. The
open file stays, one version on, so audit and statistics still count the case.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass

from .. import crypto, entries, events, ids, retention
from ..errors import Refused, UsageError
from ..keyring import ref, wrap
from ..registry import PROGRAMME_MANAGER, Staff
from . import casekeys, unit
from .core import Core
from .protection import retention_months


@dataclass(frozen=True)
class Purged:
    """What `purge` did: proposed (waiting for a second programme manager) or done."""

    case_id: str
    event_id: str
    done: bool
    proposer: str

    def as_dict(self) -> dict[str, object]:
        return {
            "case_id": self.case_id,
            "event_id": self.event_id,
            "state": "purged" if self.done else "proposed",
            "proposed_by": self.proposer,
        }


def pending_proposal(repo: Core, case_id: str) -> tuple[str, str] | None:
    """The open purge proposal of a case, as (event ID, proposer), if its last commit is
    one: any later change of the case withdraws it."""
    action, event_id, proposer = casekeys.last_trailers(
        repo.git, case_id, "HEAD", "Cmgit-Action", events.EVENT_TRAILER, "Cmgit-Actor"
    )
    if action != events.PURGE_PROPOSED.action:
        return None
    return (event_id, proposer) if event_id and proposer else None


def purge(
    repo: Core,
    identities: Sequence[crypto.Identity],
    case_id: str,
    *,
    reason: str,
    today: dt.date,
) -> Purged:
    """Propose the erasure of a case past its retention period, or, run by a second
    programme manager on a proposed one, erase it."""
    case_id = ids.check_case_id(case_id)
    if not ids.REASON_RE.fullmatch(reason):
        raise UsageError("the reason is a code such as retention_ended (letters, digits and _)")
    actor = repo.acting(identities, PROGRAMME_MANAGER, action="purging a case")
    repo.check_config_trusted()
    path = ids.record_path(case_id)
    unit.precheck_clean(repo, path)
    loaded = repo.load(case_id, identities)
    if not loaded.sealed_entries:
        raise Refused(
            "only a record kept as sealed entries can be erased",
            case_id=case_id,
            hint="bring the repository to record format 2 first (cmgit migrate)",
        )
    _check_due(repo, case_id, loaded.record.open.get("closed_on"), today)
    proposal = pending_proposal(repo, case_id)
    if proposal is None:
        event_id = events.PURGE_PROPOSED.new_id(os.urandom(5))
        unit.save(
            repo,
            loaded,
            actor,
            today,
            events.PURGE_PROPOSED.action,
            None,
            events.details(event_id, reason=reason),
        )
        return Purged(case_id, event_id, False, actor.id)
    event_id, proposer = proposal
    if proposer == actor.id:
        raise Refused(
            "you proposed this erasure; a second programme manager authorises it",
            case_id=case_id,
            hint="ask another programme manager to run the same command",
        )
    return _erase(repo, loaded.record.open, actor, event_id, proposer, reason, today)


def _check_due(repo: Core, case_id: str, closed_on: object, today: dt.date) -> None:
    months = retention_months(repo)
    due = retention.past_retention([(case_id, closed_on)], months or 0, today) if months else []
    if not due:
        raise Refused(
            "the case is not past its retention period",
            case_id=case_id,
            hint="cmgit retention due lists the cases that are",
        )


def _erase(
    repo: Core,
    open_fields: dict[str, object],
    actor: Staff,
    event_id: str,
    proposer: str,
    reason: str,
    today: dt.date,
) -> Purged:
    case_id = str(open_fields["case_id"])
    path = ids.record_path(case_id)
    removed = {p: None for p in _entry_paths(repo, case_id)}
    with unit.change(repo, [path]) as parent:
        version = int(str(open_fields["version"])) + 1
        after = {**open_fields, "version": version}
        if ref.read_case(repo.git, case_id):  # (gone already if a purge was cut short)
            casekeys.write_keyring(repo, {case_id: None}, actor)
        unit.commit(
            repo,
            {path: entries.render_open_file(after, repo.schemas.open_fields), **removed},
            f"{case_id}: {events.PURGE.action} {event_id}",
            [
                ("Cmgit-Case", case_id),
                ("Cmgit-Action", events.PURGE.action),
                *events.details(event_id, reason=reason),
                (events.PROPOSER_TRAILER, proposer),
                ("Cmgit-Version", str(version)),
                ("Cmgit-Date", today.isoformat()),
            ],
            actor,
            parent,
        )
    return Purged(case_id, event_id, True, proposer)


def _entry_paths(repo: Core, case_id: str) -> list[str]:
    folder = entries.entries_dir(case_id)
    return [entry.path for entry in repo.git.ls_tree("HEAD", folder)]


# -- recovery by custodians ------------------------------------------------------------


@dataclass(frozen=True)
class Recovered:
    case_id: str
    event_id: str
    custodians: tuple[str, ...]


def recover_key(
    repo: Core,
    identities: Sequence[crypto.Identity],
    case_id: str,
    custodian_identities: Sequence[crypto.Identity],
    *,
    today: dt.date,
) -> Recovered:
    """k custodians together unwrap a case key that no current reader can, and it is
    wrapped again to the case's readers as the registry has them now; the case records
    that its key was recovered, and by which custodians."""
    actor = repo.acting(identities, PROGRAMME_MANAGER, action="recovering a case key")
    repo.check_config_trusted()
    case_id = ids.check_case_id(case_id)
    path = ids.record_path(case_id)
    unit.precheck_clean(repo, path)
    loaded = repo.load_open(case_id)
    if not loaded.sealed_entries:
        raise Refused(
            "key recovery is for records kept as sealed entries",
            case_id=case_id,
            hint="a format-1 record is sealed to the recovery recipients directly",
        )
    people, threshold = casekeys.custodians(repo.settings)
    files = ref.read_case(repo.git, case_id)
    key = wrap.recover(files, case_id, people, threshold, custodian_identities)
    present = tuple(
        c.id for c in people if c.recipient in {i.recipient for i in custodian_identities}
    )
    event_id = events.KEY_RECOVERY.new_id(os.urandom(5))
    loaded.key = key
    with unit.change(repo, [path]) as parent:
        casekeys.write_keyring(
            repo, {case_id: casekeys.wrapped(repo, key, loaded.record.open)}, actor
        )
        version = loaded.record.version + 1
        after = {**loaded.record.open, "version": version}
        unit.commit(
            repo,
            {path: entries.render_open_file(after, repo.schemas.open_fields)},
            f"{case_id}: {events.KEY_RECOVERY.action} {event_id}",
            [
                ("Cmgit-Case", case_id),
                ("Cmgit-Action", events.KEY_RECOVERY.action),
                *events.details(event_id),
                (events.CUSTODIANS_TRAILER, " ".join(present[:threshold])),
                ("Cmgit-Version", str(version)),
                ("Cmgit-Date", today.isoformat()),
            ],
            actor,
            parent,
        )
    return Recovered(case_id, event_id, present[:threshold])
