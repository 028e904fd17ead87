"""The case-management procedure, loaded from ``schemas/workflow.yaml``.

States, roles and their scopes, transitions with their guards and effects, events, and
display profiles are data; this module turns them into a model and applies it to a
record. Pure: ``today``, the actor, the settings and the staff registry are arguments;
nothing here reads a clock, a file or a key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import guards as checks
from .errors import UsageError
from .guards import Situation

# The canonical states (SPEC, domain 2.1). The data file may relabel them through display
# profiles but the state names are what records, commits and statistics use.
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
CLOSED = "closed"
MONITORING = "post_closure_monitoring"
# The open field listing every state a case entered, as "day state", oldest first.
STATE_HISTORY = "state_history"
UASC = checks.UASC


class WorkflowError(ValueError):
    """The workflow data is inconsistent (a guard, state or role that does not exist)."""


@dataclass(frozen=True)
class Guard:
    code: str
    severity: str  # hard, warn, override
    summary: str
    check: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    schema: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Transition:
    id: str
    sources: tuple[str, ...]
    target: str
    by: tuple[str, ...]
    summary: str
    four_eyes: str | None = None
    guards: tuple[str, ...] = ()
    reasons: Mapping[str, tuple[str, ...]] | None = None
    effects: tuple[str, ...] = ()


@dataclass(frozen=True)
class Event:
    form: str
    states: tuple[str, ...]
    by: tuple[str, ...]
    guards: tuple[str, ...] = ()


@dataclass(frozen=True)
class Assignment:
    by: tuple[str, ...]
    states: tuple[str, ...]
    reasons: tuple[str, ...]
    guards: tuple[str, ...]


@dataclass(frozen=True)
class Failure:
    """A guard that did not hold: its code, how hard it is, and why in a few words."""

    code: str
    severity: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class Workflow:
    def __init__(self, doc: Mapping[str, Any]):
        groups = {name: tuple(roles) for name, roles in doc["role_groups"].items()}

        def roles(spec: str | Iterable[str]) -> tuple[str, ...]:
            if isinstance(spec, str):
                if spec not in groups:
                    raise WorkflowError(f"unknown role group {spec}")
                return groups[spec]
            return tuple(spec)

        self.states: dict[str, Mapping[str, Any]] = dict(doc["states"])
        self.initial_state: str = doc["initial_state"]
        self.scopes: dict[str, str] = {r: v["scope"] for r, v in doc["roles"].items()}
        self.authorisers = frozenset(groups.get("authorisers", ()))
        self.guards = {
            code: Guard(
                code,
                g["severity"],
                g["summary"],
                g.get("check"),
                g.get("params", {}),
                g.get("schema"),
            )
            for code, g in doc["guards"].items()
        }
        self.transitions = {
            tid: Transition(
                tid,
                tuple(t["from"]),
                t["to"],
                roles(t["by"]),
                t["summary"],
                t.get("four_eyes"),
                tuple(t.get("guards", ())),
                {r: tuple(g) for r, g in t["reasons"].items()} if "reasons" in t else None,
                tuple(t.get("effects", ())),
            )
            for tid, t in doc["transitions"].items()
        }
        self.events = {
            form: Event(form, tuple(e["states"]), roles(e["by"]), tuple(e.get("guards", ())))
            for form, e in doc["events"].items()
        }
        a = doc["assignment"]
        self.assignment = Assignment(
            roles(a["by"]), tuple(a["states"]), tuple(a["reasons"]), tuple(a["guards"])
        )
        self.profiles: dict[str, Mapping[str, Any]] = dict(doc["display_profiles"])
        self._check()

    def _check(self) -> None:
        """Every name the data uses must exist: a typo must not switch a guard off."""
        states = set(self.states)
        if set(STATES) != states:
            raise WorkflowError("the workflow must define exactly the canonical states")
        if self.initial_state not in states:
            raise WorkflowError("unknown initial state")
        used_roles = {r for t in self.transitions.values() for r in t.by}
        used_roles |= {r for e in self.events.values() for r in e.by} | set(self.assignment.by)
        if used_roles - set(self.scopes):
            raise WorkflowError("a transition or event names an unknown role")
        codes: set[str] = set(self.assignment.guards)
        for t in self.transitions.values():
            if not set(t.sources) <= states or t.target not in states:
                raise WorkflowError(f"{t.id} names an unknown state")
            codes |= set(t.guards) | ({t.four_eyes} if t.four_eyes else set())
            for extra in (t.reasons or {}).values():
                codes |= set(extra)
            if set(t.effects) - set(EFFECTS):
                raise WorkflowError(f"{t.id} names an unknown effect")
        for e in self.events.values():
            codes |= set(e.guards)
            if not set(e.states) <= states:
                raise WorkflowError(f"event {e.form} names an unknown state")
        missing = codes - set(self.guards)
        if missing:
            raise WorkflowError("undefined guards: " + ", ".join(sorted(missing)))
        for guard in self.guards.values():
            if guard.check and guard.check not in checks.CHECKS:
                raise WorkflowError(f"{guard.code} names an unknown check")
        for name, profile in self.profiles.items():
            if set(profile["labels"]) != states:
                raise WorkflowError(f"display profile {name} must label every state")

    # -- questions ------------------------------------------------------------------

    @property
    def caseload_states(self) -> frozenset[str]:
        """States that count toward a caseworker's caseload (the "open" states)."""
        return frozenset(s for s, v in self.states.items() if v["caseload"])

    @property
    def held_states(self) -> frozenset[str]:
        """States in which a caseworker still holds the case (all but closed)."""
        return frozenset(s for s in self.states if s != CLOSED)

    def find(self, source: str, target: str, reason: str | None = None) -> Transition | None:
        """The transition from ``source`` to ``target``. Some pairs have several (T19 and
        T19b, T22 and T26, T23 and T26): the reason picks the one that takes it, and
        without a reason the one that takes none; otherwise the first in the data."""
        found = [t for t in self.transitions.values() if source in t.sources and t.target == target]
        for transition in found:
            if (
                (transition.reasons is None)
                if reason is None
                else (reason in (transition.reasons or {}))
            ):
                return transition
        return found[0] if found else None

    def label(self, state: str, profile: str) -> str:
        labels = self.profiles.get(profile, {}).get("labels", {})
        return str(labels.get(state, state))

    def in_scope(self, role: str, actor_id: str, actor_team: str, case: Mapping[str, Any]) -> bool:
        scope = self.scopes.get(role, "none")
        return (
            scope == "all"
            or (scope == "team" and case.get("team") == actor_team)
            or (scope == "own" and case.get("caseworker") == actor_id)
        )

    def permission(
        self,
        allowed: Iterable[str],
        role: str,
        actor_id: str,
        actor_team: str,
        case: Mapping[str, Any],
        action: str,
    ) -> Failure | None:
        """GA: the role may do the action, and the case is within the role's scope."""
        allowed = tuple(allowed)
        if role not in allowed:
            return Failure("GA", "hard", f"{action} is for {', '.join(allowed)}; you are {role}")
        if not self.in_scope(role, actor_id, actor_team, case):
            scope = self.scopes.get(role, "none")
            return Failure("GA", "hard", f"the case is outside your scope ({scope} cases)")
        return None

    def reasons_for(self, transition: Transition, reason: str | None) -> tuple[str, ...]:
        """Extra guards for the reason given, after checking the reason is allowed."""
        if transition.reasons is None:
            if reason is not None:
                raise UsageError(f"{transition.id} takes no --reason")
            return ()
        if reason is None:
            raise UsageError(
                f"{transition.id} needs --reason, one of: " + ", ".join(transition.reasons)
            )
        if reason not in transition.reasons:
            raise UsageError(f"{transition.id} takes --reason " + ", ".join(transition.reasons))
        return transition.reasons[reason]

    def evaluate(
        self,
        codes: Iterable[str],
        situation: Situation,
        schema_holds: Callable[[Guard, Mapping[str, Any]], bool],
    ) -> list[Failure]:
        """Every guard of ``codes`` that does not hold, in order, each once."""
        failures = []
        for code in dict.fromkeys(codes):
            guard = self.guards[code]
            if guard.schema is not None:
                problem = None if schema_holds(guard, situation.record) else guard.summary
            else:
                assert guard.check is not None
                problem = checks.CHECKS[guard.check](situation, guard.params)
            if problem:
                failures.append(Failure(code, guard.severity, problem))
        return failures


# -- effects: what a transition changes besides the state ------------------------------


def _close(case: dict[str, Any], s: Situation, transition: Transition) -> None:
    closure = dict(case.get("closure") or {})
    closure.setdefault("closure_reason", s.reason)
    closure.setdefault("proposed_on", s.today.isoformat())
    closure.setdefault("proposed_by", s.actor_id)
    # The authorisation is the command itself: who runs it, in what role, today.
    closure.setdefault("authorised_by", s.actor_id)
    closure.setdefault("authorised_role", s.actor_role)
    closure.setdefault("authorised_on", s.today.isoformat())
    closure.setdefault("closure_date", s.today.isoformat())
    closure.setdefault("final_risk_level", case.get("risk_level") or "low")
    closure["post_closure_monitoring_required"] = transition.target == MONITORING
    if closure.get("closure_reason") is None:
        closure.pop("closure_reason")
    case["closure"] = closure


def _activate_plan(case: dict[str, Any], s: Situation, transition: Transition) -> None:
    plan = checks.current_plan(case)
    if plan is None:
        return
    plan = dict(plan)
    if plan.get("status") == "draft":
        plan["status"] = "active"
    plan.setdefault("signed_by_supervisor", {"staff_id": s.actor_id, "date": s.today.isoformat()})
    plans = list(case["case_plan"])
    plans[-1] = plan
    case["case_plan"] = plans


def _new_episode(case: dict[str, Any], s: Situation, transition: Transition) -> None:
    kept = {"episode": case["episode"]}
    for form in ("closure", "post_closure_monitoring", "transfer"):
        if form in case:
            kept[form] = case.pop(form)
    case["previous_episodes"] = [*case.get("previous_episodes", []), kept]
    case["episode"] = case["episode"] + 1
    case["comprehensive_assessment_required"] = False
    reopen = checks.latest(case.get("reopen"), "reopened_on")
    if reopen is not None and "authorised_by" not in reopen:
        reopen["authorised_by"] = s.actor_id


def _archive(case: dict[str, Any], s: Situation, transition: Transition) -> None:
    if "post_closure_monitoring" in case:
        case["post_closure_monitoring"] = {
            **case["post_closure_monitoring"],
            "ended_on": case["post_closure_monitoring"].get("ended_on", s.today.isoformat()),
        }


def _set(key: str, value: Any) -> Callable[[dict[str, Any], Situation, Transition], None]:
    def effect(case: dict[str, Any], s: Situation, transition: Transition) -> None:
        case[key] = value

    return effect


def _drop(key: str) -> Callable[[dict[str, Any], Situation, Transition], None]:
    def effect(case: dict[str, Any], s: Situation, transition: Transition) -> None:
        case.pop(key, None)

    return effect


EFFECTS: dict[str, Callable[[dict[str, Any], Situation, Transition], None]] = {
    "close": _close,
    # Removing personal details field by field needs the schema's classes: the store
    # does it. A registration form cannot lose its personal fields (the child, where
    # registered, the address are required), and a case closed without registration
    # has no use for one: it goes whole.
    "minimise": _drop("registration"),
    "require_comprehensive": _set("comprehensive_assessment_required", True),
    "assessment_done": _set("comprehensive_assessment_required", False),
    "activate_plan": _activate_plan,
    "cancel_closure": _drop("closure"),
    "archive": _archive,
    "new_episode": _new_episode,
}


def apply_effects(transition: Transition, case: dict[str, Any], situation: Situation) -> None:
    for name in transition.effects:
        EFFECTS[name](case, situation, transition)


# -- open summaries ----------------------------------------------------------------------


def age_band(date_of_birth: Any, today: dt.date) -> str | None:
    """E10 age band from a full or partial date of birth (partial dates: mid-period)."""
    age = checks.age_on(date_of_birth, today)
    if age is None:
        return None
    for limit, band in ((4, "0_4"), (11, "5_11"), (14, "12_14"), (17, "15_17")):
        if age <= limit:
            return band
    return "18_plus"


def enter_state(case: dict[str, Any], state: str, today: dt.date) -> None:
    """Put the case (its open fields, or the whole record) in ``state`` from ``today``,
    and add it to the state history, which keyless statistics read instead of git's
    history. A schema that keeps no state history is left without one."""
    case["state"] = state
    case["state_since"] = today.isoformat()
    if STATE_HISTORY in case:
        case[STATE_HISTORY] = [*(case[STATE_HISTORY] or ()), f"{today.isoformat()} {state}"]


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

    risk = checks.latest(forms.get("risk_assessment"), "assessed_on")
    assessment = checks.latest(forms.get("assessment"), "started_on")
    review = checks.latest(forms.get("review"), "date")
    if risk is not None:
        out["risk_level"] = risk.get("risk_level")
        out["immediate_risk"] = bool(risk.get("immediate_risk"))
    elif assessment is not None:
        out["risk_level"] = assessment.get("recommended_risk_level")
        out["immediate_risk"] = bool(assessment.get("immediate_risk"))
    else:
        out["risk_level"] = None
        out["immediate_risk"] = False
    # A later review's risk level is the newest word on risk.
    if review is not None and (
        risk is None
        or (checks.to_date(review.get("date")) or dt.date.min)
        > (checks.to_date(risk.get("assessed_on")) or dt.date.min)
    ):
        out["risk_level"] = review.get("risk_level", out["risk_level"])

    finished = state in (CLOSED, MONITORING)
    out["closure_reason"] = closure.get("closure_reason") if finished else None
    out["closed_on"] = closure.get("closure_date") if finished else None

    out["next_follow_up_due"] = next_follow_up(out, forms, settings)
    plan = checks.current_plan(forms)
    next_review = review.get("next_review_on") if review else None
    if next_review is None and plan is not None and plan.get("status") == "active":
        next_review = (plan.get("monitoring") or {}).get("next_review_date")
    if next_review is None and plan is not None and plan.get("status") == "active":
        start = checks.to_date(out.get("state_since")) or today
        next_review = (
            start + dt.timedelta(days=int(settings.get("review_interval_days", 90)))
        ).isoformat()
    in_review_states = state in ("implementation", "follow_up_review")
    out["next_review_due"] = next_review if in_review_states else None
    return out


def next_follow_up(
    open_fields: Mapping[str, Any], forms: Mapping[str, Any], settings: Mapping[str, Any]
) -> str | None:
    """Last successful contact plus the interval for the risk level (domain R7).

    A failed contact attempt does not reset the clock.
    """
    state = open_fields["state"]
    if state in (INITIAL_STATE, CLOSED):
        return None
    intervals = settings.get("follow_up_interval_days", {})
    if state == "immediate_action":
        days = intervals.get("immediate_action", 1)
    elif state == MONITORING:
        monitoring = forms.get("post_closure_monitoring") or {}
        days = monitoring.get("interval_days") or settings.get("monitoring_interval_days", 30)
    else:
        days = intervals.get(open_fields.get("risk_level") or "medium", 14)
    contacts = [f for f in forms.get("follow_up") or () if f.get("contact_successful")]
    last = checks.latest(contacts, "date")
    start = checks.to_date(last.get("date")) if last else None
    if state == MONITORING:
        started = checks.to_date((forms.get("post_closure_monitoring") or {}).get("started_on"))
        start = max(filter(None, (start, started)), default=None)
    start = (
        start
        or checks.to_date(open_fields.get("registered_on"))
        or checks.to_date(open_fields.get("state_since"))
    )
    return (start + dt.timedelta(days=int(days))).isoformat() if start else None
