"""Event commits: one shape for every commit that records that information left the
repository (an export, a disclosure to a child or family, a referral or transfer
package; the erasure of a case and the recovery of its key).

Every event commit names its kind by its action, an event ID of the kind's prefix and
8 Crockford characters (`Cmgit-Event`), and its day (`Cmgit-Date`). An event about one
case names the case (`Cmgit-Case`, `Cmgit-Version`) and changes exactly that case's
record, one version on: its sealed details go into the case's `disclosures` list, so
`cmgit log ID` and `cmgit show ID` show it, and nothing open says more than the commit
does. A programme-wide event (an export) changes no file. What the details are
(recipient, provider, sections) stays sealed: a keyless reader sees the kind, the ID,
the day and, for an export, the count and the reason for a plaintext.

In record format 2 a case's forms are sealed entries beside its record: an event that
seals details adds the case's one new entry with the record; the erasure of a case
removes all of its entries, and the other events about keys change the record alone.

Pure: audit and the store both build and judge event commits from these rules.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from . import ids
from .ids import CROCKFORD

EVENT_TRAILER = "Cmgit-Event"
COUNT_TRAILER = "Cmgit-Count"
REASON_TRAILER = "Cmgit-Reason"
DISCLOSURES = "disclosures"  # the sealed list of a case's events
# Open fields an event never changes: it records that information left, nothing else.
# (Fields summarised from the forms, such as the age band, follow the day of writing.)
UNCHANGED_FIELDS = ("state", "state_since", "state_history", "team", "caseworker")


@dataclass(frozen=True)
class Kind:
    """One kind of event commit."""

    action: str  # its Cmgit-Action
    prefix: str  # of its event IDs, before the 8 Crockford characters
    per_case: bool  # about one case (changes its record) or programme-wide (changes none)
    optional: frozenset[str]  # trailers it may carry besides the common ones
    seals_details: bool = False  # writes sealed details into the case (format 2: an entry)

    def trailers(self) -> frozenset[str]:
        """Every trailer an event of this kind may carry (besides actor and role)."""
        case = {"Cmgit-Case", "Cmgit-Version"} if self.per_case else set()
        return frozenset({"Cmgit-Action", EVENT_TRAILER, "Cmgit-Date", *case, *self.optional})

    def new_id(self, entropy: bytes) -> str:
        return ids.new_item_id(self.prefix.rstrip("-"), entropy)

    def is_id(self, text: Any) -> bool:
        tail = text[len(self.prefix) :] if isinstance(text, str) else ""
        return (
            isinstance(text, str)
            and text.startswith(self.prefix)
            and len(tail) == 8
            and all(c in CROCKFORD for c in tail)
        )


EXPORT = Kind(
    "export", "export-", per_case=False, optional=frozenset({COUNT_TRAILER, REASON_TRAILER})
)
DISCLOSE = Kind(
    "disclose",
    "disclosure-",
    per_case=True,
    optional=frozenset({REASON_TRAILER}),
    seals_details=True,
)
# A referral or transfer package: its event ID is the package ID, which the provider
# holds too (the receipt code is a keyed hash of it).
PACKAGE = Kind("disclosure", "PKG-", per_case=True, optional=frozenset(), seals_details=True)
# Erasure at the end of retention, four eyes: one programme manager proposes, another
# erases (the same event ID); the proposal changes the record's version only.
PURGE_PROPOSED = Kind(
    "purge-proposed", "purge-", per_case=True, optional=frozenset({REASON_TRAILER})
)
PROPOSER_TRAILER = "Cmgit-Proposer"
PURGE = Kind(
    "purge", "purge-", per_case=True, optional=frozenset({REASON_TRAILER, PROPOSER_TRAILER})
)
# A case key unwrapped by k recovery custodians together and wrapped again to its readers.
CUSTODIANS_TRAILER = "Cmgit-Custodians"
KEY_RECOVERY = Kind(
    "key-recovery", "recovery-", per_case=True, optional=frozenset({CUSTODIANS_TRAILER})
)
# The events about a case's key: by a programme manager, the record one version on and
# its open fields otherwise as they were.
KEY_EVENTS = (PURGE_PROPOSED, PURGE, KEY_RECOVERY)
KINDS: dict[str, Kind] = {
    kind.action: kind for kind in (EXPORT, DISCLOSE, PACKAGE, PURGE_PROPOSED, PURGE, KEY_RECOVERY)
}


def details(
    event_id: str, *, count: int | None = None, reason: str | None = None
) -> list[tuple[str, str]]:
    """The trailers that say what an event was, in cmgit's order; the store puts the
    case, action, version and date around them as for any commit."""
    out = [(EVENT_TRAILER, event_id)]
    if count is not None:
        out.append((COUNT_TRAILER, str(count)))
    if reason is not None:
        out.append((REASON_TRAILER, reason))
    return out


def shape_problems(
    kind: Kind,
    trailer: Mapping[str, str | None],
    paths: set[str],
    record_path: str | None,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
) -> Iterator[tuple[str, str]]:
    """What is wrong with an event commit's shape, as audit's (rule, text): its event ID,
    and the files it changed (``record_path`` is the named case's, None if it names no
    valid case; ``old``/``new`` that record's open fields before and after)."""
    action = kind.action
    if not kind.is_id(trailer.get(EVENT_TRAILER)):
        yield "message", f"{action} without a valid {EVENT_TRAILER}"
    if not kind.per_case:
        if paths:
            yield "paths", f"an {action} event changed files"
        return
    case_id = trailer.get("Cmgit-Case") or "no case"
    if record_path is None or paths != {record_path}:
        yield "paths", f"a {action} must change exactly the record of {case_id}"
        return
    if old is None or new is None:
        yield "paths", f"{case_id}: {action} of a case that did not exist"
        return
    if new.get("version") != old.get("version", 0) + 1:
        yield "version", f"{case_id}: version {old.get('version')} -> {new.get('version')}"
    if any(old.get(name) != new.get(name) for name in UNCHANGED_FIELDS):
        yield "transition", f"{case_id}: a {action} changed state, history or assignment"


def entries(forms: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A case's sealed event entries, oldest first."""
    return [dict(entry) for entry in forms.get(DISCLOSURES) or () if isinstance(entry, Mapping)]


def disclose_entry(
    event_id: str, recipient: str, reason: str | None, day: dt.date, by: str
) -> dict[str, Any]:
    """The sealed entry a case keeps of its disclosure to the child or family: the hash
    of the recipient (their key is theirs), the reason and the day."""
    entry: dict[str, Any] = {
        "event_id": event_id,
        "kind": DISCLOSE.action,
        "recipient_hash": hashlib.sha256(recipient.encode("utf-8")).hexdigest(),
        "disclosed_on": day.isoformat(),
        "disclosed_by": by,
    }
    if reason is not None:
        entry["reason"] = reason
    return entry
