"""Single-out risk of the open fields, and the open dates that may be kept to the month.

Anyone holding the repository reads every case's open fields without a key. A case whose
combination of team, sex, age band, separation status and open dates no other case shares
is singled out: someone who knows the child's situation can find the child's case, and
with it the child's history of steps, staff and dates. This module counts such cases
(k-anonymity on those quasi-identifiers) and coarsens the open dates no procedure reads to
the day. Pure: open values in, counts out.
"""

from __future__ import annotations

import itertools
import operator
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

# The coded open fields a neighbour can know or guess about a child, in the order shown.
QUASI_IDENTIFIERS = ("team", "sex", "age_band", "separation_status")
CASE_ID = "case_id"
DEFAULT_THRESHOLD = 5
PRECISION_SETTING = "open_date_precision"
# Open dates the procedure reads to the day, which therefore stay exact whatever the
# setting: guards (closed_on for consent and retention, state_since after immediate action,
# registered_on for follow-up dates), the follow-up clock and `cmgit due` (registered_on and
# state_since start it; next_follow_up_due, next_review_due), statistics (the due dates;
# state_history for time in each step), `cmgit retention due` (closed_on), and the audit,
# which matches state_history and state_since to the days its commits name. Every other
# open date (today identified_on) may be kept to the month: the audit only checks that a
# command's day is not before it, which the first of its month keeps true.
DAY_PRECISION = frozenset(
    {
        "registered_on",
        "state_since",
        "state_history",
        "next_follow_up_due",
        "next_review_due",
        "closed_on",
    }
)
# The date shape of the case schema's date definition, at the start of a string pattern.
_DATE_PATTERN = "^[0-9]{4}-[0-9]{2}-[0-9]{2}"
_DATE_DEF = "/$defs/date"
_DAY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _dated(node: Any) -> bool:
    """Whether a schema node holds a date, or a list or text that starts with one."""
    if not isinstance(node, Mapping):
        return False
    ref, pattern = node.get("$ref"), node.get("pattern")
    if isinstance(ref, str) and ref.endswith(_DATE_DEF):
        return True
    if isinstance(pattern, str) and pattern.startswith(_DATE_PATTERN):
        return True
    return _dated(node.get("items")) or any(_dated(alt) for alt in node.get("anyOf") or ())


def open_date_fields(properties: Mapping[str, Mapping[str, Any]]) -> tuple[str, ...]:
    """The open fields of the case schema (its ``properties``) that hold dates, in its
    order: what the schema declares, so a programme's own open dates count too."""
    return tuple(
        name for name, node in properties.items() if node.get("x-cmgit") == "open" and _dated(node)
    )


def coarsenable(properties: Mapping[str, Mapping[str, Any]]) -> tuple[str, ...]:
    """The open dates of the case schema no procedure reads to the day."""
    return tuple(name for name in open_date_fields(properties) if name not in DAY_PRECISION)


def to_month(value: Any) -> Any:
    """A date (or a text or list starting with dates) kept to its month: the day becomes
    the first, so the value stays a valid date, and no later than the day it stands for."""
    if isinstance(value, str) and _DAY_RE.match(value):
        return f"{value[:8]}01{value[10:]}"
    if isinstance(value, list):
        return [to_month(item) for item in value]
    return value


def apply_precision(
    open_fields: dict[str, Any],
    properties: Mapping[str, Mapping[str, Any]],
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    """The open fields as the setting ``open_date_precision`` keeps them when a record is
    written: with ``month``, the open dates no procedure reads to the day kept to the
    month; with ``day`` (the default), as computed."""
    if settings.get(PRECISION_SETTING, "day") != "month":
        return open_fields
    return {
        name: to_month(value) if name in coarsenable(properties) else value
        for name, value in open_fields.items()
    }


@dataclass(frozen=True)
class Exposure:
    """How the cases group on ``fields``: ``groups`` different combinations of values,
    ``unique`` cases alone in theirs (k = 1), ``small`` cases in a group smaller than the
    threshold (the unique ones included)."""

    fields: tuple[str, ...]
    groups: int
    unique: int
    small: int


def _key(value: Any) -> Any:
    """A value that can be counted: lists (the state history) as tuples; anything else
    cmgit did not write as its text."""
    if isinstance(value, list):
        return tuple(_key(item) for item in value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def _keys(rows: Sequence[Sequence[Any]], columns: Sequence[int]) -> list[tuple[Any, ...]]:
    """Each row's values in ``columns``, as one countable key."""
    return [tuple(_key(row[n]) for n in columns) for row in rows]


def exposure(keys: Sequence[Any], fields: Sequence[str], threshold: int) -> Exposure:
    """The grouping of cases by ``keys`` (one per case: its values of ``fields``)."""
    sizes = Counter(keys)
    return Exposure(
        tuple(fields),
        len(sizes),
        sum(1 for size in sizes.values() if size == 1),
        sum(size for size in sizes.values() if size < threshold),
    )


@dataclass(frozen=True)
class SingleOut:
    """The single-out report: the cases grouped on the quasi-identifiers and the open
    dates as stored; as ``open_date_precision: month`` would store them; on every
    combination of the quasi-identifiers without dates; and on the quasi-identifiers with
    each date alone, so a coordinator sees what drives the risk, and (``each_at_month``)
    with each date the setting would keep to the month, so kept. ``singled_out`` names the
    cases unique as stored, for the coordinator's eyes only."""

    cases: int
    threshold: int
    quasi_identifiers: tuple[str, ...]
    dates: tuple[str, ...]
    month_fields: tuple[str, ...]
    stored: Exposure
    at_month: Exposure
    without_dates: tuple[Exposure, ...]
    with_each_date: tuple[Exposure, ...]
    each_at_month: tuple[Exposure, ...]
    singled_out: tuple[str, ...]

    def as_dict(self, *, with_ids: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not with_ids:
            del out["singled_out"]
        return out


def single_out(
    rows: Sequence[Sequence[Any]],
    order: Sequence[str],
    properties: Mapping[str, Mapping[str, Any]],
    threshold: int = DEFAULT_THRESHOLD,
) -> SingleOut:
    """The single-out report of the cases ``rows`` (each its open values in the field
    ``order``), on the quasi-identifiers and the open dates that the case schema's
    ``properties`` declare and that the rows carry."""
    at = {name: n for n, name in enumerate(order)}
    quasi = tuple(name for name in QUASI_IDENTIFIERS if name in at)
    dates = tuple(name for name in open_date_fields(properties) if name in at)
    months = tuple(name for name in coarsenable(properties) if name in at)
    fields = (*quasi, *dates)
    keys = _keys(rows, [at[name] for name in fields])
    moved = [fields.index(name) for name in months]
    coarse = [tuple(to_month(v) if n in moved else v for n, v in enumerate(key)) for key in keys]
    combos = [c for size in range(1, len(quasi) + 1) for c in itertools.combinations(quasi, size)]
    sizes = Counter(keys)
    ids = operator.itemgetter(at[CASE_ID]) if CASE_ID in at else None
    return SingleOut(
        cases=len(rows),
        threshold=threshold,
        quasi_identifiers=quasi,
        dates=dates,
        month_fields=months,
        stored=exposure(keys, fields, threshold),
        at_month=exposure(coarse, fields, threshold),
        without_dates=tuple(
            exposure(_keys(rows, [at[n] for n in combo]), combo, threshold) for combo in combos
        ),
        with_each_date=tuple(
            exposure(_keys(rows, [at[n] for n in (*quasi, d)]), (*quasi, d), threshold)
            for d in dates
        ),
        each_at_month=tuple(
            exposure(
                [(*k[:-1], to_month(k[-1])) for k in _keys(rows, [at[n] for n in (*quasi, d)])],
                (*quasi, d),
                threshold,
            )
            for d in months
        ),
        singled_out=tuple(
            sorted(str(ids(row)) for row, key in zip(rows, keys, strict=True) if sizes[key] == 1)
        )
        if ids is not None
        else (),
    )
