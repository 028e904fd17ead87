"""Views: what the records say, keyless (list, due, log) from open fields and history, and
keyed (find, validate) on every core through `bulk`.
"""

from __future__ import annotations

import datetime as dt
import json
import operator
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import crypto, ids, signing, trail, workflow
from .. import guards as checks
from ..errors import (
    CaseNotFound,
    CmgitError,
    InvalidRecord,
    NotARecipient,
    SealedWithoutYou,
    UsageError,
    nearest_hint,
)
from ..history import Commit
from ..keyring import ref as keyring_ref
from ..progress import SILENT, Progress
from ..workflow import WARN
from . import bulk
from .core import Committed, Core


@dataclass
class CheckResult:
    case_id: str
    ok: bool
    opened: bool
    problem: str | None = None
    exit_code: int = 0
    # A tamper alarm: the record was sealed without the person checking, although the
    # registry names them as a recipient; the (short) commit that sealed it.
    sealed_without_you_by: str | None = None


@dataclass(frozen=True)
class CaseList:
    """Listed cases: one tuple of open values per case, in the order of ``fields``, and
    each case's step in the display profile."""

    fields: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    steps: list[str]

    def column(self, name: str) -> list[Any]:
        if name == "step":
            return self.steps
        n = self.fields.index(name)
        return [row[n] for row in self.rows]

    def as_dicts(self) -> list[dict[str, Any]]:
        fields = (*self.fields, "step")
        return [
            dict(zip(fields, (*row, step), strict=True))
            for row, step in zip(self.rows, self.steps, strict=True)
        ]


def _profile(repo: Core, profile: str | None) -> str:
    name = profile or repo.settings.get("display_profile", "iag6")
    if name not in repo.workflow.profiles:
        raise UsageError(
            "unknown display profile",
            hint=nearest_hint(str(name), list(repo.workflow.profiles), "profiles"),
        )
    return str(name)


def list_cases(
    repo: Core,
    *,
    today: dt.date,
    states: Sequence[str] = (),
    team: str | None = None,
    caseworker: str | None = None,
    overdue: bool = False,
    profile: str | None = None,
) -> CaseList:
    """Cases from their open fields, filtered, by case ID; each with its step in the
    display profile. A row is a tuple: a programme lists 100,000 cases, and a mapping
    each costs more than the rest of the listing."""
    for name in states:
        if name not in workflow.STATES:
            raise UsageError("unknown state", hint=nearest_hint(name, workflow.STATES, "states"))
    shown = _profile(repo, profile)
    labels = {state: repo.workflow.label(state, shown) for state in repo.workflow.states}
    order = repo.schemas.open_fields
    at = {name: n for n, name in enumerate(order)}
    state_at, team_at, worker_at = at["state"], at["team"], at["caseworker"]
    due_at = [at["next_follow_up_due"], at["next_review_due"]]
    rows = sorted(repo.open_rows(), key=operator.itemgetter(at["case_id"]))
    if states or team or caseworker or overdue:
        rows = [
            values
            for values in rows
            if not (
                (states and values[state_at] not in states)
                or (team and values[team_at] != team)
                or (caseworker and values[worker_at] != caseworker)
                or (overdue and not _is_overdue([values[n] for n in due_at], today))
            )
        ]
    steps = [labels.get(values[state_at], values[state_at]) for values in rows]
    return CaseList(order, rows, steps)


def due(
    repo: Core,
    *,
    today: dt.date,
    within: int = 7,
    team: str | None = None,
    caseworker: str | None = None,
    risks: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Follow-ups and reviews due within ``within`` days or overdue, highest risk first;
    only of ``team``, ``caseworker`` and the risk levels ``risks`` where given."""
    horizon = today + dt.timedelta(days=within)
    rank = {"high": 0, "medium": 1, "low": 2}
    at = {name: n for n, name in enumerate(repo.schemas.open_fields)}
    wanted = [
        (at[name], {value} if isinstance(value, str) else set(value))
        for name, value in (("team", team), ("caseworker", caseworker), ("risk_level", risks))
        if value
    ]
    cases = repo.open_rows()
    if wanted:
        # A value of another type, in a record cmgit did not write, matches nothing.
        cases = [
            row
            for row in cases
            if all(isinstance(row[i], str) and row[i] in values for i, values in wanted)
        ]
    shown = [(name, at[name]) for name in ("risk_level", "state", "team", "caseworker")]
    found = []
    for kind, key in (("follow_up", "next_follow_up_due"), ("review", "next_review_due")):
        column = list(map(operator.itemgetter(at[key]), cases))
        try:
            distinct = set(column)
        except TypeError:  # a list, in a record cmgit did not write: not a date
            column = [value if isinstance(value, str) else None for value in column]
            distinct = set(column)
        # A programme's due dates are a few hundred different days: each is read once.
        days = {
            text: day
            for text in distinct
            if (day := checks.to_date(text)) is not None and day <= horizon
        }
        for values, text in zip(cases, column, strict=True):
            when = days.get(text)
            if when is not None:
                found.append(
                    {
                        "case_id": values[at["case_id"]],
                        "kind": kind,
                        "due_on": when.isoformat(),
                        "days_overdue": (today - when).days,
                        **{name: values[i] for name, i in shown},
                    }
                )
    found.sort(
        key=lambda r: (
            rank.get(r["risk_level"] or "", 3),
            -r["days_overdue"],
            r["case_id"],
            r["kind"],
        )
    )
    return found


def case_log(repo: Core, case_id: str, *, profile: str | None = None) -> list[dict[str, Any]]:
    """The case's history from commit messages alone: the path it took, and who acted."""
    path = ids.record_path(ids.check_case_id(case_id))
    commits = repo.git.log(path)
    if not commits:
        raise CaseNotFound(f"no history for case {case_id}", case_id=case_id)
    shown = _profile(repo, profile)
    rows = []
    for commit in commits:
        t = commit.trailer
        action = t("Cmgit-Action") or "unknown"
        if action.startswith(("staff-", "settings-")):
            action = "re-encrypt"
        source, target = t("Cmgit-From"), t("Cmgit-To")
        rows.append(
            {
                "commit": commit.oid,
                # The day the action happened (CMGIT_TODAY for back-dated entry).
                "date": t("Cmgit-Date") or commit.when[:10],
                "actor": t("Cmgit-Actor") or commit.author,
                "role": t("Cmgit-Role") or "",
                "action": action,
                "transition": t("Cmgit-Transition"),
                "from": source,
                "to": target,
                "from_step": repo.workflow.label(source, shown) if source else None,
                "to_step": repo.workflow.label(target, shown) if target else None,
                "reason": t("Cmgit-Reason"),
                # An event (a disclosure, a package) shows its event ID; what it held and
                # to whom stays sealed in the case's disclosures.
                "detail": t("Cmgit-Form")
                or t("Cmgit-Staff")
                or t("Cmgit-Setting")
                or t("Cmgit-Event"),
                "version": int(v) if (v := t("Cmgit-Version")) and v.isdigit() else None,
                "warnings": commit.trailers.get("Cmgit-Warning", []) or _warned(commit),
                "signature": _signature_status(repo, commit.oid, t("Cmgit-Actor")),
                **trail.decision(commit.trailers),
            }
        )
    return rows


def _warned(commit: Commit) -> list[str]:
    """The guards a form-2 commit lists as warnings (form 1 named them on their own)."""
    listed = (value.split(" ") for value in commit.trailers.get(trail.GUARD, []))
    return [parts[0] for parts in listed if parts[1:2] == [WARN]]


def _signature_status(repo: Core, commit: str, actor_id: str | None) -> str:
    """good: valid and by the actor's registered key; bad: anything else signed; none."""
    payload, armored = repo.git.objects.signed_commit(commit)
    if armored is None:
        return "none"
    try:
        key = signing.verify(payload, armored)
    except signing.BadSignature:
        return "bad"
    member = repo.registry.staff.get(actor_id or "")
    return "good" if member is not None and member.signing_key == key else "bad"


def find(
    repo: Core, identities: Sequence[crypto.Identity], text: str, progress: Progress = SILENT
) -> list[str]:
    """Cases whose sealed text contains ``text`` (case-insensitive), in memory only."""
    actor = repo.actor(identities)
    needle = unicodedata.normalize("NFC", text).casefold()
    if not needle.strip():
        raise UsageError("give some text to look for")
    committed = repo.committed_records()
    found = bulk.in_pool(
        repo.git,
        lambda case_id, entry: matches(repo, case_id, entry, identities, actor.recipient, needle),
        sorted(committed),
        committed,
        "Searching cases",
        progress,
    )
    return [case_id for case_id, hit in zip(sorted(committed), found, strict=True) if hit]


def matches(
    repo: Core,
    case_id: str,
    committed: Committed,
    identities: Sequence[crypto.Identity],
    recipient: str,
    needle: str,
) -> bool:
    """Whether the sealed forms of a case ``recipient`` can open contain ``needle``."""
    try:
        loaded = repo.load_open(case_id, committed)
        if recipient not in repo.expected_recipients(loaded.record.open):
            return False
        forms = repo.open_forms(loaded, identities)
    except (InvalidRecord, NotARecipient, CaseNotFound):
        return False
    return needle in json.dumps(forms, ensure_ascii=False).casefold()


def validate(
    repo: Core,
    identities: Sequence[crypto.Identity] | None,
    case_ids: Sequence[str],
    progress: Progress = SILENT,
) -> list[CheckResult]:
    """Check every record (or those named): a record of the registry's recipients, and,
    where ``identities`` open it, its sealed forms against the schema."""
    committed = repo.committed_records()
    wanted = list(case_ids) or sorted(committed)
    return bulk.in_pool(
        repo.git,
        lambda case_id, entry: check_record(repo, case_id, entry, identities),
        wanted,
        committed,
        "Validating cases",
        progress,
    )


def check_record(
    repo: Core, case_id: str, committed: Committed, identities: Sequence[crypto.Identity] | None
) -> CheckResult:
    """One record checked as `validate` checks it: a CheckResult, never an error."""
    mine = {i.recipient for i in identities or ()}
    try:
        loaded = repo.load_open(case_id, committed)
        expected = repo.check_stanzas(loaded)
        opened = bool(identities) and bool(mine & set(expected))
        if opened:
            assert identities is not None
            repo.open_loaded(loaded, identities)
        return CheckResult(case_id, True, opened)
    except CmgitError as exc:
        if exc.case_id is None:
            exc.case_id = case_id
        result = CheckResult(case_id, False, False, str(exc), exc.exit_code)
        if isinstance(exc, SealedWithoutYou):
            result.sealed_without_you_by = sealing_commit(repo, case_id)
        return result


def sealing_commit(repo: Core, case_id: str) -> str:
    """The short id of the commit that sealed the case as it is: the keyring shard
    commit that wrapped its key in record format 2, else the commit that wrote its
    record file as it is at HEAD."""
    shard = keyring_ref.head(repo.git, case_id)
    if shard is not None and keyring_ref.read_case(repo.git, case_id, shard):
        return repo.git.text("log", "-1", "--format=%h", shard)
    return repo.git.text("log", "-1", "--format=%h", "HEAD", "--", ids.record_path(case_id))


def _is_overdue(due_dates: Sequence[Any], today: dt.date) -> bool:
    return any((day := checks.to_date(value)) is not None and day < today for value in due_dates)
