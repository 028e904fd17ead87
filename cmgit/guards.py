"""The named guard checks: the rules JSON Schema cannot say (dates, counts, people).

Each check takes the situation (the case after the change, the actor, today, the
settings) and the guard's parameters from the workflow data, and returns None when the
rule holds or a few words saying why not. The words never carry a value from the case:
only codes, counts and numbers of days.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Guard codes the code itself names (the rest are only in the workflow data): the
# global guards the workflow applies to every action, and those a command must know.
ROLE_AND_SCOPE = "GA"  # the role may do it, on a case within the role's scope
RECORD_SCHEMA = "GB"  # the record validates after the change
CLOSED_READ_ONLY = "GD"  # a closed case is read-only
KEY_WORKER = "G03"  # the key caseworker is an active caseworker
CASELOAD = "G03c"  # the caseload limit, which a supervisor may override with a reason

UASC = frozenset({"unaccompanied", "separated"})
WITH_FAMILY = frozenset({"with_primary_caregiver", "accompanied_at_risk"})
# Plan actions that are a durable solution and the BID decisions that support them (G18).
DURABLE = {
    "family_reunification": {"family_reunification"},
    "return_to_country_of_origin": {"return_and_reintegration", "family_reunification"},
    "long_term_alternative_care": {"alternative_family_based_care", "other_durable_solution"},
}


@dataclass
class Situation:
    """Everything a guard may look at. ``record`` is the case after the change."""

    record: dict[str, Any]
    before: Mapping[str, Any]
    actor_id: str
    actor_role: str
    today: dt.date
    settings: Mapping[str, Any]
    active_caseworkers: frozenset[str]
    caseload: Mapping[str, int]
    authorisers: frozenset[str]
    reason: str | None = None
    override: str | None = None
    personal_left: int = 0


# -- helpers shared with the workflow ------------------------------------------------


def to_date(value: Any) -> dt.date | None:
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return None
    return None


def latest(items: Any, key: str) -> dict[str, Any] | None:
    """The item of a repeated form with the latest ``key`` date (ties: the later entry)."""
    best: dict[str, Any] | None = None
    best_date: dt.date | None = None
    for item in items or ():
        when = to_date(item.get(key))
        if when is not None and (best_date is None or when >= best_date):
            best, best_date = item, when
    return best


def current_plan(case: Mapping[str, Any]) -> dict[str, Any] | None:
    """The plan in force or in draft: the last one that was not superseded."""
    plans = [p for p in case.get("case_plan") or () if p.get("status") != "superseded"]
    return plans[-1] if plans else None


def add_months(day: dt.date, months: int) -> dt.date:
    month = day.month - 1 + months
    year = day.year + month // 12
    month = month % 12 + 1
    for last in (31, 30, 29, 28):
        try:
            return dt.date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise ValueError("unreachable")


def birth_date(text: Any, *, latest: bool = False) -> dt.date | None:
    """A full or partial date of birth. A partial one counts from the middle of its
    period, or with ``latest`` from its last day: the latest the child can have been born."""
    if not isinstance(text, str):
        return None
    parts = text.split("-")
    try:
        year = int(parts[0])
        if latest and len(parts) == 1:
            return dt.date(year, 12, 31)
        month = int(parts[1]) if len(parts) > 1 else 7
        if latest and len(parts) == 2:
            return add_months(dt.date(year, month, 1), 1) - dt.timedelta(days=1)
        day = int(parts[2]) if len(parts) > 2 else (1 if len(parts) == 1 else 15)
        return dt.date(year, month, day)
    except (ValueError, IndexError, OverflowError):
        return None


def age_on(date_of_birth: Any, day: dt.date, *, latest: bool = False) -> int | None:
    born = birth_date(date_of_birth, latest=latest)
    if born is None:
        return None
    years = day.year - born.year - ((day.month, day.day) < (born.month, born.day))
    return years if years >= 0 else None


def _granted(case: Mapping[str, Any], scope: str, consent_id: Any = None) -> bool:
    for consent in case.get("consent") or ():
        if consent_id is not None and consent.get("consent_id") != consent_id:
            continue
        if consent.get("decision") == "granted" and scope in consent.get("scopes", ()):
            return True
    return False


def consent_granted(case: Mapping[str, Any], scope: str, consent_id: Any) -> bool:
    """Whether the consent item ``consent_id`` of a case is granted for ``scope``."""
    return _granted(case, scope, consent_id)


def _closure_day(s: Situation) -> dt.date:
    return to_date((s.record.get("closure") or {}).get("closure_date")) or s.today


# -- the checks ----------------------------------------------------------------------


def criteria_met(s: Situation, params: Mapping[str, Any]) -> str | None:
    met = (s.record.get("registration") or {}).get("vulnerability_criteria_met") or []
    if not met:
        return "registration lists no vulnerability criterion"
    allowed = set(s.settings.get("vulnerability_criteria", ()))
    if not set(met) <= allowed:
        return "registration lists a criterion the programme settings do not define"
    return None


def fresh_consent(s: Situation, params: Mapping[str, Any]) -> str | None:
    closed = to_date(s.before.get("closed_on")) or dt.date.min
    given = {
        c.get("given_by_role")
        for c in s.record.get("consent") or ()
        if c.get("decision") == "granted"
        and "registration_and_services" in c.get("scopes", ())
        and (to_date(c.get("decision_on")) or dt.date.min) >= closed
    }
    if "child" not in given or not given & {"parent", "caregiver", "legal_guardian"}:
        return "consent of the child and of an adult, given since the case closed, is needed"
    return None


def key_caseworker_active(s: Situation, params: Mapping[str, Any]) -> str | None:
    if s.record.get("caseworker") not in s.active_caseworkers:
        return "the key caseworker is not an active caseworker"
    return None


def caseload_limit(s: Situation, params: Mapping[str, Any]) -> str | None:
    worker = s.record.get("caseworker")
    limit = int(s.settings.get("caseload_limit", 25))
    held = s.caseload.get(str(worker), 0)
    if held < limit:
        return None
    if s.override and s.actor_role in s.authorisers:
        return None
    if s.override:
        return "only a supervisor or programme manager can override the caseload limit"
    return f"{worker} already holds {held} open cases, limit {limit}"


def _latest_assessment(s: Situation) -> dict[str, Any] | None:
    return latest(s.record.get("assessment"), "started_on")


def assessment_opens_case(s: Situation, params: Mapping[str, Any]) -> str | None:
    last = _latest_assessment(s)
    if last is None or not last.get("completed_on"):
        return "no completed assessment"
    if last.get("outcome") != "open_case":
        return "the latest assessment does not conclude open_case"
    if not last.get("needs"):
        return "the latest assessment lists no needs"
    return None


def assessment_no_concern(s: Situation, params: Mapping[str, Any]) -> str | None:
    last = _latest_assessment(s)
    if last is None or not last.get("completed_on"):
        return "no completed assessment"
    if last.get("outcome") != "no_further_action":
        return "the latest assessment does not conclude no_further_action"
    return None


def comprehensive_after_immediate(s: Situation, params: Mapping[str, Any]) -> str | None:
    if not s.before.get("comprehensive_assessment_required"):
        return None
    since = to_date(s.before.get("state_since")) or dt.date.min
    for item in s.record.get("assessment") or ():
        done = to_date(item.get("completed_on"))
        if item.get("phase") == "comprehensive" and done is not None and done >= since:
            return None
    return "after immediate action a comprehensive assessment must be completed first"


def plan_complete(s: Situation, params: Mapping[str, Any]) -> str | None:
    # Guards see the case after the move, when approval has made the draft plan active.
    plan = current_plan(s.record)
    if plan is None:
        return "there is no case plan"
    needs = {n.get("need_id") for a in s.record.get("assessment") or () for n in a.get("needs", ())}
    objectives = plan.get("objectives") or []
    if not objectives:
        return "the plan has no objectives"
    for number, objective in enumerate(objectives, start=1):
        if not objective.get("need_ids") or not set(objective["need_ids"]) <= needs:
            return f"objective {number} is not linked to an assessed need"
        if not objective.get("indicator") or not objective.get("target_date"):
            return f"objective {number} lacks an indicator or a target date"
    for number, action in enumerate(plan.get("actions") or [], start=1):
        timed = (action.get("start_date") and action.get("end_date")) or action.get(
            "timeframe_horizon"
        )
        if not (
            action.get("responsible_party")
            and timed
            and action.get("location")
            and action.get("direct_or_referral")
        ):
            return (
                f"action {number} lacks who is responsible, when, where, or whether "
                "it is a referral"
            )
    if not plan.get("actions"):
        return "the plan has no actions"
    return None


def plan_participation(s: Situation, params: Mapping[str, Any]) -> str | None:
    plan = current_plan(s.record) or {}
    taking_part = plan.get("participation") or {}
    if not (
        taking_part.get("child_participated") is True
        or taking_part.get("child_not_participated_reason")
    ):
        return "the child's participation in the plan (or why not) is not recorded"
    if s.record.get("separation_status") in WITH_FAMILY and (
        taking_part.get("caregiver_participated") is not True
    ):
        return "the caregiver's participation in the plan is not recorded"
    return None


def plan_signatures(s: Situation, params: Mapping[str, Any]) -> str | None:
    plan = current_plan(s.record) or {}
    worker = (plan.get("signed_by_caseworker") or {}).get("staff_id")
    approver = (plan.get("signed_by_supervisor") or {}).get("staff_id")
    if worker != s.record.get("caseworker"):
        return "the plan is not signed by its key caseworker"
    if approver != s.actor_id:
        return "the supervisor's signature must be that of the person approving"
    if worker == approver:
        return "caseworker and supervisor signatures are the same person"
    return None


# What a supervisor signs when approving a plan: a change to any of it needs a new approval.
APPROVED_CONTENT = ("objectives", "actions", "signed_by_caseworker", "signed_by_supervisor")


def plan_kept_as_approved(s: Situation, params: Mapping[str, Any]) -> str | None:
    """Recording a case plan never makes one active, nor changes what an active plan's
    approval covers. A plan is versioned (domain: +1 per revision, draft, active,
    superseded) and approval is a move of its own (T09, G16), so a changed plan is a new
    draft version that supersedes the approved one and is approved again. Turning the
    approved plan back into a draft in place would leave a case in implementation with no
    approved plan and the superseded version lost; progress is a review's finding
    (objective_status), not a change of the plan."""
    approved = {
        p.get("plan_id"): p for p in s.before.get("case_plan") or () if p.get("status") == "active"
    }
    for plan in s.record.get("case_plan") or ():
        was = approved.get(plan.get("plan_id"))
        if was is None:
            if plan.get("status") == "active":
                return (
                    "a plan becomes active only when a supervisor approves it: record it as a draft"
                )
            continue
        # Superseded is what a new version makes of it; a draft again, or changed, is not.
        if plan.get("status") == "draft" or any(
            plan.get(key) != was.get(key) for key in APPROVED_CONTENT
        ):
            return (
                f"the approved plan {plan.get('plan_id')} would change its objectives, actions, "
                "signatures or status: record a new draft version (plan_id left out, status "
                "draft) for approval, and progress in a review's objective_status"
            )
    return None


def bid_for_durable_solution(s: Situation, params: Mapping[str, Any]) -> str | None:
    if s.record.get("separation_status") not in UASC:
        return None
    plan = current_plan(s.record) or {}
    bids = s.record.get("bid") or []
    for action in plan.get("actions") or ():
        wanted = DURABLE.get(action.get("intervention_type", ""))
        if wanted is None:
            continue
        if any(
            b.get("decision") in wanted and (b.get("appeal") or {}).get("status") != "pending"
            for b in bids
        ):
            continue
        return "a durable-solution action needs a matching BID with no appeal pending"
    return None


def plan_referral_consent(s: Situation, params: Mapping[str, Any]) -> str | None:
    plan = current_plan(s.record) or {}
    refers = any(a.get("direct_or_referral") == "referral" for a in plan.get("actions") or ())
    if refers and not _granted(s.record, "information_sharing_referral"):
        return "referrals need consent to share information for referral"
    return None


def referral_consent(s: Situation, params: Mapping[str, Any]) -> str | None:
    for number, referral in enumerate(s.record.get("referral") or (), start=1):
        if referral.get("urgency") == "urgent":
            continue
        if not _granted(s.record, "information_sharing_referral", referral.get("consent_ref")):
            return (
                f"routine referral {number} needs consent_ref to a granted consent "
                "for information_sharing_referral"
            )
    return None


def authorised_by_actor(s: Situation, params: Mapping[str, Any]) -> str | None:
    if s.actor_role not in s.authorisers:
        return "closure is authorised by a supervisor or programme manager"
    if s.actor_id == s.before.get("caseworker"):
        return "the case's own caseworker cannot authorise it (four eyes)"
    authorised = (s.record.get("closure") or {}).get("authorised_by", s.actor_id)
    if authorised != s.actor_id:
        return "the closure form names another authoriser than the person acting"
    return None


def minimised(s: Situation, params: Mapping[str, Any]) -> str | None:
    if s.personal_left:
        return f"{s.personal_left} personal field(s) remain"
    return None


def objectives_met(s: Situation, params: Mapping[str, Any]) -> str | None:
    review = latest(s.record.get("review"), "date")
    if review is None or review.get("outcome") != "propose_closure":
        return "the latest review does not propose closure"
    if review.get("new_concerns"):
        return "the latest review found new concerns"
    plan = current_plan(s.record) or {}
    for number, objective in enumerate(plan.get("objectives") or (), start=1):
        status = objective.get("status")
        if status == "dropped" and objective.get("dropped_reason"):
            continue
        if status != "achieved":
            return f"objective {number} is neither achieved nor dropped with a reason"
    if s.record.get("risk_level") == "high":
        return "the risk level is still high"
    return None


def objectives_met_in_review(s: Situation, params: Mapping[str, Any]) -> str | None:
    """Version 2 of objectives_met: achievement is what the latest review found
    (objective_status), objective by objective_id, against the approved plan in force. The
    plan itself stays as approved; dropping an objective changes the plan, so its reason
    is the approved plan's (dropped_reason)."""
    review = latest(s.record.get("review"), "date")
    if review is None or review.get("outcome") != "propose_closure":
        return "the latest review does not propose closure"
    if review.get("new_concerns"):
        return "the latest review found new concerns"
    plan = current_plan(s.record)
    if plan is None:
        return "there is no case plan"
    if plan.get("status") != "active":
        return "the case plan in force is a draft, not approved"
    found = {o.get("objective_id"): o.get("status") for o in review.get("objective_status") or ()}
    for objective in plan.get("objectives") or ():
        name = objective.get("objective_id")
        status = found.get(name)
        if status is None:
            return f"the latest review gives no status for objective {name}"
        if status == "achieved" or (status == "dropped" and objective.get("dropped_reason")):
            continue
        return (
            f"objective {name} is {status} in the latest review; it must be achieved, "
            "or dropped with a reason in the approved plan"
        )
    if s.record.get("risk_level") == "high":
        return "the risk level is still high"
    return None


def closure_discussed(s: Situation, params: Mapping[str, Any]) -> str | None:
    day = to_date((s.record.get("closure") or {}).get("discussion_with_child_family_on"))
    if day is None:
        return "the closure discussion with the child and family is not recorded"
    if day > s.today:
        return "the closure discussion is dated in the future"
    return None


def turned_18(s: Situation, params: Mapping[str, Any]) -> str | None:
    return _aged_out(s, _closure_day(s), latest=False)


def turned_18_for_certain(s: Situation, params: Mapping[str, Any]) -> str | None:
    """Version 2 of turned_18, for a closure for turned_18 (the move's reason, or the
    closure form's where the move takes none, as authorising closure with monitoring):
    the young person is 18 on the day of the move, never by a date typed into the form,
    and a partial date of birth counts from the last day it can be, so a child whose
    birthday is known only by year or month is never closed as an adult before they
    surely are one."""
    if not _for_turned_18(s):
        return None
    return _aged_out(s, s.today, latest=True, when="today")


def turns_18_within_notice(s: Situation, params: Mapping[str, Any]) -> str | None:
    """Closure at 18 is discussed ahead of time: it may be proposed from the notice period
    (setting closure_notice_days) before the birthday, and authorised from the birthday
    (turned_18 version 2)."""
    notice = int(s.settings.get("closure_notice_days", 30))
    return _aged_out(
        s,
        s.today + dt.timedelta(days=notice),
        latest=True,
        when=f"within the notice period ({notice} days) from today",
    )


def _for_turned_18(s: Situation) -> bool:
    reason = s.reason or (s.record.get("closure") or {}).get("closure_reason")
    return reason == "turned_18"


def _aged_out(
    s: Situation, day: dt.date, *, latest: bool, when: str = "on the closure date"
) -> str | None:
    closure = s.record.get("closure") or {}
    if closure.get("continue_past_18_reason"):
        return "a reason to continue past 18 is recorded"
    child = (s.record.get("registration") or {}).get("child") or {}
    age = age_on(child.get("date_of_birth"), day, latest=latest)
    if age is None:
        return "no date of birth is recorded"
    if age < 18:
        return f"the young person is not yet 18 {when}"
    return None


def notice_period(s: Situation, params: Mapping[str, Any]) -> str | None:
    discussed = to_date((s.record.get("closure") or {}).get("discussion_with_child_family_on"))
    needed = int(s.settings.get("closure_notice_days", 30))
    if discussed is None:
        return "the closure discussion is not recorded"
    days = (_closure_day(s) - discussed).days
    if days < needed:
        return f"closure comes {days} days after the discussion; the notice period is {needed}"
    return None


def notice_period_to_the_move(s: Situation, params: Mapping[str, Any]) -> str | None:
    """Version 2 of notice_period: the case closes on the day of the move that closes it,
    so the notice runs from the discussion to that day, never to a date typed into the
    closure form (a closure_date set weeks ahead let a case close without notice)."""
    discussed = to_date((s.record.get("closure") or {}).get("discussion_with_child_family_on"))
    needed = int(s.settings.get("closure_notice_days", 30))
    if discussed is None:
        return "the closure discussion is not recorded"
    days = (s.today - discussed).days
    if days < needed:
        return (
            f"the move comes {days} days after the closure discussion; "
            f"the notice period is {needed}"
        )
    return None


def conference_decided_closure(s: Situation, params: Mapping[str, Any]) -> str | None:
    wanted = (s.record.get("closure") or {}).get("case_conference_id")
    if not wanted:
        return "the closure form names no case conference"
    for conference in s.record.get("case_conference") or ():
        if conference.get("conference_id") == wanted and "close" in conference.get(
            "decision_codes", ()
        ):
            return None
    return "the named case conference did not decide to close"


def monitoring_planned(s: Situation, params: Mapping[str, Any]) -> str | None:
    plan = s.record.get("post_closure_monitoring") or {}
    months = max(3, int(s.settings.get("post_closure_monitoring_months", 3)))
    end = to_date(plan.get("min_end_date"))
    if end is None or not plan.get("interval_days"):
        return "monitoring after closure is not planned (end date and visit interval)"
    if end < add_months(_closure_day(s), months):
        return f"monitoring must last at least {months} months after closure"
    return None


def monitoring_planned_from_the_move(s: Situation, params: Mapping[str, Any]) -> str | None:
    """Version 2 of monitoring_planned: monitoring lasts the period from the day of the
    move that closes the case, not from a closure_date typed into the form, which could
    be back-dated to shorten it."""
    plan = s.record.get("post_closure_monitoring") or {}
    months = max(3, int(s.settings.get("post_closure_monitoring_months", 3)))
    end = to_date(plan.get("min_end_date"))
    if end is None or not plan.get("interval_days"):
        return "monitoring after closure is not planned (end date and visit interval)"
    if end < add_months(s.today, months):
        return f"monitoring must last at least {months} months from today, the day of closure"
    return None


def monitoring_done(s: Situation, params: Mapping[str, Any]) -> str | None:
    plan = s.record.get("post_closure_monitoring") or {}
    end = to_date(plan.get("min_end_date"))
    start = to_date(plan.get("started_on"))
    if end is None or start is None:
        return "monitoring after closure is not recorded"
    if s.today < end:
        return f"monitoring has {(end - s.today).days} days to go"
    interval = int(plan.get("interval_days") or s.settings.get("monitoring_interval_days", 30))
    visits = sorted(
        day
        for f in s.record.get("follow_up") or ()
        if f.get("phase") == "post_closure"
        and f.get("contact_successful")
        and (day := to_date(f.get("date"))) is not None
        and start <= day <= end
    )
    points = [start, *visits, end]
    longest = max((b - a).days for a, b in itertools.pairwise(points))
    if longest > interval:
        return f"a gap of {longest} days between monitoring visits; the interval is {interval}"
    if plan.get("monitoring_outcome") != "no_concerns":
        return "the monitoring outcome is not no_concerns"
    return None


def monitoring_done_without_concern(s: Situation, params: Mapping[str, Any]) -> str | None:
    """Version 2 of monitoring_done: the outcome no_concerns is not taken as it stands
    while a monitoring visit's new concern is open. A follow-up of phase post_closure in
    this monitoring (from its start) records a concern with new_concern; the form has no
    field that resolves one, so it stays open until a later monitoring visit that saw the
    child found no new concern and no area of concern. Otherwise the case is reopened
    (T24)."""
    problem = monitoring_done(s, params)
    if problem:
        return problem
    start = to_date((s.record.get("post_closure_monitoring") or {}).get("started_on"))
    assert start is not None  # monitoring_done found it
    concern = _open_concern(s.record.get("follow_up") or (), start)
    if concern is not None:
        return (
            f"follow-up {concern} recorded a new concern after closure and no later visit "
            "that saw the child found none"
        )
    return None


def _open_concern(follow_ups: Iterable[Mapping[str, Any]], start: dt.date) -> str | None:
    """The id of the first monitoring follow-up from ``start`` whose new concern no later
    visit has cleared."""
    visits = sorted(
        (day, number, f)
        for number, f in enumerate(follow_ups)
        if f.get("phase") == "post_closure"
        and (day := to_date(f.get("date"))) is not None
        and day >= start
    )
    first: str | None = None  # the first concern still open; `last` the latest one's day
    last = dt.date.min
    for day, _, visit in visits:
        if visit.get("new_concern"):
            first, last = first or str(visit.get("follow_up_id")), day
        elif day > last and _all_clear(visit):
            first = None
    return first


def _all_clear(visit: Mapping[str, Any]) -> bool:
    observed = (visit.get("observations") or {}).values()
    return bool(
        visit.get("contact_successful")
        and visit.get("child_seen")
        and not visit.get("new_concern")
        and all(o.get("status") != "concern" for o in observed)
    )


def reopen_recorded(s: Situation, params: Mapping[str, Any]) -> str | None:
    if s.actor_role not in s.authorisers:
        return "reopening is authorised by a supervisor or programme manager"
    if s.actor_id == s.before.get("caseworker"):
        return "the case's own caseworker cannot authorise reopening (four eyes)"
    reopen = latest(s.record.get("reopen"), "reopened_on")
    if reopen is None or to_date(reopen.get("reopened_on")) != s.today:
        return "a reopen form dated today with the reason and the new concern is needed"
    if reopen.get("authorised_by", s.actor_id) != s.actor_id:
        return "the reopen form names another authoriser than the person acting"
    return None


def transfer_complete(s: Situation, params: Mapping[str, Any]) -> str | None:
    transfer = s.record.get("transfer")
    if not transfer:
        return "no transfer form"
    if not _granted(s.record, "case_file_transfer", transfer.get("consent_ref")):
        return "the transfer needs consent_ref to granted consent for case_file_transfer"
    if not transfer.get("receipt_confirmed_on"):
        return "receipt by the receiving agency is not confirmed"
    if transfer.get("cross_border") and not transfer.get("data_sharing_protocol_ref"):
        return "a cross-border transfer needs a data-sharing protocol reference"
    return None


def inaccessible(s: Situation, params: Mapping[str, Any]) -> str | None:
    attempts = sorted(
        day
        for f in s.record.get("follow_up") or ()
        if f.get("contact_successful") is False and (day := to_date(f.get("date"))) is not None
    )
    needed = int(s.settings.get("inaccessible_min_attempts", 3))
    span = int(s.settings.get("inaccessible_min_days", 30))
    if len(attempts) < needed:
        return f"{len(attempts)} failed contact attempts recorded; {needed} are needed"
    if (attempts[-1] - attempts[0]).days < span:
        return f"failed attempts span {(attempts[-1] - attempts[0]).days} days; {span} are needed"
    return None


def within_retention(s: Situation, params: Mapping[str, Any]) -> str | None:
    months = s.settings.get("retention_period_months")
    closed = to_date(s.before.get("closed_on"))
    if months is None or closed is None:
        return None
    if s.today > add_months(closed, int(months)):
        return "the retention period of this case has ended"
    return None


def review_outcome(s: Situation, params: Mapping[str, Any]) -> str | None:
    review = latest(s.record.get("review"), "date")
    if review is None or review.get("outcome") != params.get("outcome"):
        return f"the latest review's outcome is not {params.get('outcome')}"
    return None


def closure_reason_matches(s: Situation, params: Mapping[str, Any]) -> str | None:
    closure = s.record.get("closure")
    if not closure:
        return "no closure form (record it with the move: --from closure.yaml)"
    if s.reason is not None and closure.get("closure_reason") != s.reason:
        return "the closure form gives another reason than --reason"
    return None


def follow_up_dates(s: Situation, params: Mapping[str, Any]) -> str | None:
    registered = to_date(s.record.get("registered_on"))
    for number, item in enumerate(s.record.get("follow_up") or (), start=1):
        day = to_date(item.get("date"))
        if day is None:
            continue
        if day > s.today:
            return f"follow-up {number} is dated in the future"
        if registered is not None and day < registered:
            return f"follow-up {number} is dated before the registration"
    return None


def _unused(s: Situation, params: Mapping[str, Any]) -> str | None:
    # GA, GB and GD are enforced by the store itself (role and scope, schema, read-only),
    # GC by the commits of free text and the client's hooks (cmgit.personal_text), G19p
    # by packing a referral or transfer (cmgit.packages); they are listed in the data
    # so that refusals and the site can name them.
    return None


Check = Callable[[Situation, Mapping[str, Any]], str | None]

# Version 1 of every named check. A guard in the workflow names its check, and the version
# when not the first (`version: 2`).
CHECKS: dict[str, Check] = {
    "role_and_scope": _unused,
    "record_schema": _unused,
    "no_personal_text": _unused,
    "closed_read_only": _unused,
    "provider_agreement": _unused,
    "criteria_met": criteria_met,
    "key_caseworker_active": key_caseworker_active,
    "fresh_consent": fresh_consent,
    "caseload_limit": caseload_limit,
    "assessment_opens_case": assessment_opens_case,
    "assessment_no_concern": assessment_no_concern,
    "comprehensive_after_immediate": comprehensive_after_immediate,
    "plan_complete": plan_complete,
    "plan_participation": plan_participation,
    "plan_signatures": plan_signatures,
    "plan_kept_as_approved": plan_kept_as_approved,
    "bid_for_durable_solution": bid_for_durable_solution,
    "plan_referral_consent": plan_referral_consent,
    "referral_consent": referral_consent,
    "authorised_by_actor": authorised_by_actor,
    "minimised": minimised,
    "objectives_met": objectives_met,
    "closure_discussed": closure_discussed,
    "turned_18": turned_18,
    "turns_18_within_notice": turns_18_within_notice,
    "notice_period": notice_period,
    "conference_decided_closure": conference_decided_closure,
    "monitoring_planned": monitoring_planned,
    "monitoring_done": monitoring_done,
    "reopen_recorded": reopen_recorded,
    "transfer_complete": transfer_complete,
    "inaccessible": inaccessible,
    "within_retention": within_retention,
    "review_outcome": review_outcome,
    "closure_reason_matches": closure_reason_matches,
    "follow_up_dates": follow_up_dates,
}

# Later versions of checks whose rule was corrected. The earlier versions stay: history
# made under a workflow that named one is judged by the rule in force when it was made.
# The template's workflow names the latest; `cmgit migrate` brings a repository to it.
REVISED: dict[tuple[str, int], Check] = {
    ("turned_18", 2): turned_18_for_certain,
    ("objectives_met", 2): objectives_met_in_review,
    ("monitoring_done", 2): monitoring_done_without_concern,
    ("notice_period", 2): notice_period_to_the_move,
    ("monitoring_planned", 2): monitoring_planned_from_the_move,
}


def named_check(name: str, version: int = 1) -> Check | None:
    """The check a guard names, in the version it names; None if there is no such one."""
    return CHECKS.get(name) if version == 1 else REVISED.get((name, version))


def latest_version(name: str) -> int:
    return max([1, *(version for (revised, version) in REVISED if revised == name)])


# The checks, by name and version, that read only what anyone reads without a key: the
# open fields of the case before and after (``before`` and ``record``), ``today``, the
# settings, the registry (``active_caseworkers``, ``authorisers``), the caseloads (counted
# from the open fields of the other cases), the reason and the actor. Audit recomputes
# these for every transition; every other check reads a sealed form (registration,
# assessment, plan, consent, closure, follow-up, ...) or what a move removed
# (``personal_left``), so audit checks only how its result is listed. A test runs each
# one with the sealed forms garbled: the declaration cannot drift from the code.
KEYLESS: frozenset[tuple[str, int]] = frozenset(
    {
        ("key_caseworker_active", 1),  # the open caseworker among active caseworkers
        ("caseload_limit", 1),  # the open caseworker's count of open cases, settings
        ("within_retention", 1),  # the open closed_on before the move, today, settings
    }
)


def keyless(name: str, version: int = 1) -> bool:
    """Whether the check a guard names reads nothing sealed (`KEYLESS`)."""
    return (name, version) in KEYLESS
