"""Three-way merge of two offices' changes to one case, field by field and item by item.

Both sides started from the same base. Where only one side changed a value, that change
wins; where both made the same change, it stands; where both changed the same value
differently, it is a true conflict and nothing is merged. Lists of items that carry an
id (consents, follow-ups, objectives...) are merged item by item; other lists as values.
Items both offices added under one id (the sequential ids cmgit gave before SPEC section
9) are no conflict while this clone's are unpushed: `Renumbering` gives them new ids.
Pure: documents in, a document or the list of conflicting paths out.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import Refused

MISSING: Any = object()
# Open fields a move or an assignment changes: both sides changing them is two different
# workflow decisions, which no merge may make for the people involved.
DECISIONS = ("state", "episode", "team", "caseworker")
# Open fields cmgit recomputes after the merge; their values on either side do not count.
# (Not `state_since` nor `state_history`: only a move changes them, and a move merges as a
# decision does, the moving side's values standing.)
DERIVED = (
    "version",
    "next_follow_up_due",
    "next_review_due",
    "risk_level",
    "immediate_risk",
    "separation_status",
    "sex",
    "age_band",
    "closure_reason",
    "closed_on",
    "registered_on",
    "identified_on",
)


# Keys that name an item of a repeated form: its own id, and references to it from other
# items (a referral's consent_ref, a plan's based_on_assessment_id).
_REFERENCE_SUFFIXES = ("_id", "_ref", "_refs")


class MergeConflict(Refused):
    """Both offices changed the same part of a case differently."""


@dataclass
class Renumbering:
    """New ids for items this clone added, unpushed, under an id the other office gave to
    a different item (ids already pushed never change). One per case and sync, so this
    clone's later commits of the case follow the new ids as they are replayed.

    ``new_id`` makes an id from a form's name and the ids taken (see ids.new_item_id)."""

    new_id: Callable[[str, Collection[str]], str]
    renamed: dict[str, str] = field(default_factory=dict)

    def apply(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """``doc`` with every renamed id, and every reference to one, replaced."""
        renamed = self.renamed

        def walk(value: Any, key: str = "") -> Any:
            if isinstance(value, Mapping):
                return {k: walk(v, k) for k, v in value.items()}
            if isinstance(value, list):
                return [walk(v, key) for v in value]
            if isinstance(value, str) and key.endswith(_REFERENCE_SUFFIXES):
                return renamed.get(value, value)
            return value

        return dict(walk(doc)) if renamed else dict(doc)

    def renumber(
        self, base: Mapping[str, Any], ours: Mapping[str, Any], theirs: Mapping[str, Any]
    ) -> None:
        """Find the items ``ours`` added since ``base`` whose id ``theirs`` gave to a
        different item, and give each a new id."""
        for form, mine in ours.items():
            other, old = theirs.get(form), base.get(form)
            if not isinstance(mine, list) or not isinstance(other, list):
                continue
            old = old if isinstance(old, list) else []
            key = _id_key([*old, *mine, *other])
            if key is None:
                continue
            before = {item[key] for item in old}
            their_items = {item[key]: item for item in other}
            taken = {*before, *their_items, *(item[key] for item in mine)}
            for item in mine:
                item_id = item[key]
                if item_id in before or their_items.get(item_id, item) == item:
                    continue
                fresh = self.new_id(form, taken)
                taken.add(fresh)
                self.renamed[item_id] = fresh


def _id_key(items: Sequence[Any]) -> str | None:
    """The id field shared by every item of a list of mappings, if there is one."""
    if not items or not all(isinstance(item, Mapping) for item in items):
        return None
    keys = set.intersection(
        *({k for k in item if k.endswith("_id") and isinstance(item[k], str)} for item in items)
    )
    return sorted(keys)[0] if keys else None


def _merge(base: Any, ours: Any, theirs: Any, path: str, conflicts: list[str]) -> Any:
    if ours == theirs:
        return ours
    if ours == base:
        return theirs
    if theirs == base:
        return ours
    if isinstance(ours, Mapping) and isinstance(theirs, Mapping):
        old = base if isinstance(base, Mapping) else {}
        merged = {}
        for key in [*theirs, *(k for k in ours if k not in theirs)]:
            value = _merge(
                old.get(key, MISSING),
                ours.get(key, MISSING),
                theirs.get(key, MISSING),
                f"{path}/{key}",
                conflicts,
            )
            if value is not MISSING:
                merged[key] = value
        return merged
    if isinstance(ours, list) and isinstance(theirs, list):
        old_list = base if isinstance(base, list) else []
        key = _id_key([*old_list, *ours, *theirs])
        if key is not None:
            by_id = {item[key]: item for item in old_list}
            mine = {item[key]: item for item in ours}
            other = {item[key]: item for item in theirs}
            order = [*other, *(i for i in mine if i not in other)]
            out = []
            for item_id in order:
                value = _merge(
                    by_id.get(item_id, MISSING),
                    mine.get(item_id, MISSING),
                    other.get(item_id, MISSING),
                    f"{path}/{item_id}",
                    conflicts,
                )
                if value is not MISSING:
                    out.append(value)
            return out
    conflicts.append(path)
    return theirs


def _added(base: Mapping[str, Any], doc: Mapping[str, Any], form: str) -> set[Any]:
    """The ids of the items of ``form`` that ``doc`` has and ``base`` had not."""
    items, old = doc.get(form), base.get(form)
    if not isinstance(items, list):
        return set()
    key = _id_key([*(old if isinstance(old, list) else []), *items])
    if key is None:
        return set()
    return {item[key] for item in items} - {item[key] for item in old or ()}


def merge_cases(
    base: Mapping[str, Any],
    ours: Mapping[str, Any],
    theirs: Mapping[str, Any],
    *,
    case_id: str,
    decisions: Collection[str] = (),
    renumbering: Renumbering | None = None,
) -> dict[str, Any]:
    """Our case and theirs, merged against their common base. Raises MergeConflict naming
    the paths both changed (field names and item ids only, never values).

    ``decisions`` are forms whose new item decides for the case (a plan that supersedes
    the last, an assignment): both offices adding one is two decisions. With a
    ``renumbering``, our items that collide with theirs take new ids instead of
    conflicting."""
    if renumbering is not None:
        base = renumbering.apply(base)
        renumbering.renumber(base, renumbering.apply(ours), theirs)
        ours = renumbering.apply(ours)
    conflicts = [
        f"/{key}"
        for key in DECISIONS
        if ours.get(key) != base.get(key)
        and theirs.get(key) != base.get(key)
        and ours.get(key) != theirs.get(key)
    ]
    conflicts += [
        f"/{form}"
        for form in decisions
        if (mine := _added(base, ours, form))
        and (other := _added(base, theirs, form))
        and mine != other
    ]
    if conflicts:
        raise MergeConflict(
            "both offices made a different workflow decision on this case",
            case_id=case_id,
            problems=conflicts,
            hint="agree which one stands; one office undoes its change",
        )
    skip = set(DERIVED)
    merged = _merge(
        {k: v for k, v in base.items() if k not in skip},
        {k: v for k, v in ours.items() if k not in skip},
        {k: v for k, v in theirs.items() if k not in skip},
        "",
        conflicts,
    )
    if conflicts:
        raise MergeConflict(
            "both offices changed the same fields differently",
            case_id=case_id,
            problems=conflicts[:20],
            hint="one office records the change again after sync",
        )
    for key in skip:
        if key in theirs:
            merged[key] = theirs[key]
    return dict(merged)
