"""The case-management procedure: states and the open summaries derived from forms.

Pure: ``today`` and the settings are arguments; nothing here reads a clock or a file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

STATES = (
    "identified",
    "registered",
    "assessment",
    "immediate_action",
    "case_planning",
    "implementation",
    "follow_up_review",
    "closure_pending",
    "post_closure_monitoring",
    "closed",
)
INITIAL_STATE = "identified"
OPEN_STATES = frozenset(STATES[1:8])
# A caseworker "holds" a case until it is closed: monitoring after closure is still work.
HELD_STATES = frozenset(STATES[:9])
UASC = frozenset({"unaccompanied", "separated"})


def _date(text: Any) -> dt.date | None:
    if isinstance(text, str):
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            return None
    return None


def _latest(items: Any, key: str) -> Mapping[str, Any] | None:
    """The item of a repeated form with the latest ``key`` date (ties: the later entry)."""
    best: Mapping[str, Any] | None = None
    best_date: dt.date | None = None
    for item in items or ():
        when = _date(item.get(key))
        if when is not None and (best_date is None or when >= best_date):
            best, best_date = item, when
    return best


def age_band(date_of_birth: Any, today: dt.date) -> str | None:
    """E10 age band from a full or partial date of birth (partial dates: mid-period)."""
    if not isinstance(date_of_birth, str):
        return None
    parts = date_of_birth.split("-")
    try:
        year = int(parts[0])
        month = int(parts[1]) if len(parts) > 1 else 7
        day = int(parts[2]) if len(parts) > 2 else (1 if len(parts) == 1 else 15)
        born = dt.date(year, month, day)
    except (ValueError, IndexError):
        return None
    years = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    if years < 0:
        return None
    for limit, band in ((4, "0_4"), (11, "5_11"), (14, "12_14"), (17, "15_17")):
        if years <= limit:
            return band
    return "18_plus"


def summarise(
    open_fields: Mapping[str, Any],
    forms: Mapping[str, Any],
    settings: Mapping[str, Any],
    today: dt.date,
) -> dict[str, Any]:
    """The open fields that summarise the forms, computed when a record is sealed.

    They are never typed by hand (SPEC section 2): registration data gives sex, age band
    and separation status; the latest risk assessment (or assessment) gives the risk
    level; follow-ups and reviews give the next due dates.
    """
    out = dict(open_fields)
    state = out["state"]
    identification = forms.get("identification") or {}
    registration = forms.get("registration") or {}
    child = registration.get("child") or {}
    closure = forms.get("closure") or {}

    out["identified_on"] = identification.get("identified_on", out.get("identified_on"))
    out["registered_on"] = registration.get("registered_on")
    out["sex"] = child.get("sex")
    out["age_band"] = age_band(child.get("date_of_birth"), today) or child.get("age_band")
    out["separation_status"] = registration.get("separation_status")

    risk = _latest(forms.get("risk_assessment"), "assessed_on")
    assessment = _latest(forms.get("assessment"), "started_on")
    if risk is not None:
        out["risk_level"] = risk.get("risk_level")
        out["immediate_risk"] = bool(risk.get("immediate_risk"))
    elif assessment is not None:
        out["risk_level"] = assessment.get("recommended_risk_level")
        out["immediate_risk"] = bool(assessment.get("immediate_risk"))
    else:
        out["risk_level"] = None
        out["immediate_risk"] = False

    out["closure_reason"] = closure.get("closure_reason") if state == "closed" or (
        state == "post_closure_monitoring"
    ) else None
    out["closed_on"] = closure.get("closure_date") if out["closure_reason"] else None

    out["next_follow_up_due"] = _next_follow_up(out, forms, settings)
    review = _latest(forms.get("review"), "date")
    plans = [p for p in forms.get("case_plan") or () if p.get("status") == "active"]
    next_review = review.get("next_review_on") if review else None
    if next_review is None and plans:
        next_review = (plans[-1].get("monitoring") or {}).get("next_review_date")
    out["next_review_due"] = next_review if state in OPEN_STATES else None
    return out


def _next_follow_up(
    open_fields: Mapping[str, Any], forms: Mapping[str, Any], settings: Mapping[str, Any]
) -> str | None:
    """Last successful contact plus the interval for the risk level (domain R7).

    A failed contact attempt does not reset the clock.
    """
    state = open_fields["state"]
    if state not in OPEN_STATES and state != "post_closure_monitoring":
        return None
    intervals = settings.get("follow_up_interval_days", {})
    if state == "immediate_action":
        days = intervals.get("immediate_action", 1)
    elif state == "post_closure_monitoring":
        days = settings.get("monitoring_interval_days", 30)
    else:
        days = intervals.get(open_fields.get("risk_level") or "medium", 14)
    contacts = [f for f in forms.get("follow_up") or () if f.get("contact_successful")]
    last = _latest(contacts, "date")
    start = _date(last.get("date")) if last else None
    start = (
        start or _date(open_fields.get("registered_on")) or _date(open_fields.get("state_since"))
    )
    return (start + dt.timedelta(days=int(days))).isoformat() if start else None
