"""The case-management procedure, loaded from ``schemas/workflow.yaml``.

States, roles and their scopes, transitions with their guards and effects, events, and
display profiles are data; this module turns them into a model and applies it to a
record: `transition` moves a case, `reassign` gives it another key caseworker, and
`record_event` adds a form, each returning the new record and every guard that failed.
Pure: ``today``, the actor, the settings, the staff registry, the caseloads and the
maker of new item ids are arguments, and what it needs of the case schema comes in as a
`CaseSchema`; nothing here reads a clock, a file or a key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from . import guards as checks
from .errors import Refused, SchemaError, UsageError, nearest_hint
from .guards import CASELOAD, CLOSED_READ_ONLY, ROLE_AND_SCOPE, Situation
from .registry import CASEWORKER, Registry, Staff

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
# The forms a case opens with (`cmgit new --from`; the first is required), and the form a
# reopening move brings (with fresh consents) besides the forms of the events.
NEW_CASE_FORMS = ("identification", "registration")
REOPEN_FORM = "reopen"
# The open field listing every state a case entered, as "day state", oldest first.
STATE_HISTORY = "state_history"
UASC = checks.UASC


# The result of each guard of an action, as its commit lists it (message form 2), and
# the severity that lets an authoriser override a guard.
PASS, WARN, OVERRIDDEN, FAILED = "pass", "warn", "overridden", "failed"
OVERRIDE = "override"


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
    version: int = 1  # of the named check
    # What the case lacks and what to record, said when the guard refuses. Workflows
    # made before guards had one fall back to the summary.
    refusal: str | None = None
    # The reason codes an override of this guard (severity override) names in the
    # commit; none in a workflow made before overrides named a code.
    override_reasons: tuple[str, ...] = ()

    @property
    def refusal_text(self) -> str:
        return self.refusal or self.summary


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
                g.get("version", 1),
                g.get("refusal"),
                tuple(g.get("override_reasons", ())),
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
            if guard.check and checks.named_check(guard.check, guard.version) is None:
                raise WorkflowError(f"{guard.code} names an unknown check or version of it")
            if guard.override_reasons and guard.severity != OVERRIDE:
                raise WorkflowError(f"{guard.code} has override reasons but no override")
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
            return Failure(
                ROLE_AND_SCOPE, "hard", f"{action} is for {', '.join(allowed)}; you are {role}"
            )
        if not self.in_scope(role, actor_id, actor_team, case):
            scope = self.scopes.get(role, "none")
            return Failure(
                ROLE_AND_SCOPE, "hard", f"the case is outside your scope ({scope} cases)"
            )
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
            raise UsageError(
                f"{transition.id} takes no such --reason",
                hint=nearest_hint(reason, list(transition.reasons), "reasons"),
            )
        return transition.reasons[reason]

    def transition_for(
        self, source: str, target: str, reason: str | None, *, case_id: str
    ) -> Transition:
        """`find`, refusing a move the transition table does not have."""
        transition = self.find(source, target, reason)
        if transition is None:
            raise Refused(
                f"illegal transition: no move from {source} to {target}; "
                f"from {source}: {self.moves_from(source)}",
                case_id=case_id,
                hint="see the transition table: cmgit workflow",
            )
        return transition

    def moves_from(self, source: str) -> str:
        """The states a case can move to from ``source``, each with its transitions and,
        where only authorisers make them, who: "closed (T08, T26; supervisor or ...)"."""
        targets: dict[str, list[Transition]] = {}
        for t in self.transitions.values():
            if source in t.sources:
                targets.setdefault(t.target, []).append(t)
        shown = []
        for target, moves in targets.items():
            by = dict.fromkeys(role for t in moves for role in t.by)
            who = f"; {' or '.join(by)}" if set(by) <= self.authorisers else ""
            shown.append(f"{target} ({', '.join(t.id for t in moves)}{who})")
        return ", ".join(shown) or "none"

    def check_assignment_reason(self, reason: str | None) -> str:
        """The reason for a reassignment, which must be one the data allows."""
        reasons = self.assignment.reasons
        if reason is None:
            raise UsageError("assign needs --reason, one of: " + ", ".join(reasons))
        if reason not in reasons:
            raise UsageError(
                "assign takes no such --reason", hint=nearest_hint(reason, reasons, "reasons")
            )
        return reason

    def evaluate(
        self,
        codes: Iterable[str],
        situation: Situation,
        schema_holds: Callable[[Guard, Mapping[str, Any]], bool],
    ) -> list[Failure]:
        """Every guard of ``codes`` that does not hold, in order, each once, saying what
        the case lacks and what to record, and for a named check its reason too."""
        failures = []
        for code in dict.fromkeys(codes):
            guard = self.guards[code]
            if guard.schema is not None:
                if not schema_holds(guard, situation.record):
                    failures.append(Failure(code, guard.severity, guard.refusal_text))
                continue
            assert guard.check is not None
            check = checks.named_check(guard.check, guard.version)
            assert check is not None  # known: checked when the workflow was read
            reason = check(situation, guard.params)
            if reason:
                failures.append(Failure(code, guard.severity, _with_reason(guard, reason)))
        return failures


def _with_reason(guard: Guard, reason: str) -> str:
    """A named check's reason inside the guard's refusal, after what the case lacks and
    before what to record: "STATEMENT (reason): ACTION"."""
    if guard.refusal is None:
        return reason
    statement, colon, action = guard.refusal.partition(": ")
    if reason.lower() in statement.lower():
        return guard.refusal  # the reason would only repeat the statement
    return f"{statement} ({reason}){colon}{action}" if colon else f"{statement} ({reason})"


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
    # The reopen form is the case's own: changed as a copy, the record handed in stays.
    reopens = [dict(item) for item in case.get("reopen") or ()]
    reopen = checks.latest(reopens, "reopened_on")
    if reopen is not None and "authorised_by" not in reopen:
        reopen["authorised_by"] = s.actor_id
        case["reopen"] = reopens


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


CLOSE = "close"
MINIMISE = "minimise"
NEW_EPISODE = "new_episode"
# The form fields each effect writes itself, where the form leaves them out (the
# authorisation is the command, not a claim typed into the form): what a form template
# marks as filled in by cmgit, with the id of a repeated form's item (`merge_form`).
FILLED_BY_EFFECT: dict[str, dict[str, tuple[str, ...]]] = {
    CLOSE: {
        "closure": (
            "authorised_by",
            "authorised_role",
            "authorised_on",
            "closure_date",
            "post_closure_monitoring_required",
        )
    },
    "activate_plan": {"case_plan": ("signed_by_supervisor",)},
    NEW_EPISODE: {"reopen": ("authorised_by",)},
    "archive": {"post_closure_monitoring": ("ended_on",)},
}
EFFECTS: dict[str, Callable[[dict[str, Any], Situation, Transition], None]] = {
    CLOSE: _close,
    # Removing personal details field by field needs the schema's classes: `transition`
    # does it with `strip_personal`. A registration form cannot lose its personal fields
    # (the child, where registered, the address are required), and a case closed
    # without registration has no use for one: it goes whole.
    MINIMISE: _drop("registration"),
    "require_comprehensive": _set("comprehensive_assessment_required", True),
    "assessment_done": _set("comprehensive_assessment_required", False),
    "activate_plan": _activate_plan,
    "cancel_closure": _drop("closure"),
    "archive": _archive,
    NEW_EPISODE: _new_episode,
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


# -- one action on one case: the new record, and every guard that failed -----------------


class CaseSchema(Protocol):
    """What the workflow needs of the case schema (`cmgit.schema.SchemaSet` is one): the
    fields in clear and sealed and their order, how each form is recorded, which fields
    are personal, and whether a record meets a guard's schema condition."""

    @property
    def field_order(self) -> tuple[str, ...]: ...

    @property
    def open_fields(self) -> tuple[str, ...]: ...

    @property
    def sealed_fields(self) -> tuple[str, ...]: ...

    @property
    def case_properties(self) -> dict[str, dict[str, Any]]: ...

    def form_mode(self, form: str) -> str: ...

    def form_id_field(self, form: str) -> str | None: ...

    def resolve(self, ref: str) -> Mapping[str, Any]: ...

    def holds(self, key: str, condition: Mapping[str, Any], doc: Any) -> bool: ...


# The id of a new item of a repeated form, from the form's name and the ids its items
# already have; the caller decides how ids are made (random ones, `ids.new_item_id`, so
# two offices never give one id to different items), which keeps this module pure.
NewItemId = Callable[[str, Collection[str]], str]

# Checks the whole record after the change (guard GB) and raises if it is not valid; it
# runs before the other guards, which may assume a record of the schema's shape.
Check = Callable[[dict[str, Any]], None]


@dataclass
class Outcome:
    """A case after an action: its open fields and sealed forms, the failures that refuse
    the action (hard guards, role and scope, four eyes) and the warnings that let it
    through. The caller saves it only when ``refused`` is empty."""

    open: dict[str, Any]
    forms: dict[str, Any]
    refused: list[Failure]
    warnings: list[Failure]
    # The id of the form item an event added or changed.
    item_id: str | None = None
    # Each guard evaluated, in the workflow's order, with its result (PASS, WARN,
    # OVERRIDDEN, or FAILED where the action is refused): what the commit lists.
    results: list[tuple[str, str]] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return not self.refused

    def refusal(self, action: str, case_id: str) -> Refused:
        """The refusal (exit 4) naming every failure, then the warnings."""
        return Refused(
            f"{action} refused",
            case_id=case_id,
            problems=[str(f) for f in self.refused] + [f"{w} (warning)" for w in self.warnings],
        )


def refuse_if_closed(state: str, case_id: str) -> None:
    """GD: nothing is recorded on a closed case; it is reopened first."""
    if state == CLOSED:
        raise Refused(
            f"{CLOSED_READ_ONLY}: a closed case is read-only",
            case_id=case_id,
            hint="reopen it first (cmgit move ID registered --from reopen.yaml)",
        )


def transition(
    record: Mapping[str, Any],
    move: Transition,
    actor: Staff,
    settings: Mapping[str, Any],
    today: dt.date,
    *,
    flow: Workflow,
    schema: CaseSchema,
    staff: Registry,
    reason: str | None = None,
    forms: Mapping[str, Any] | None = None,
    override: str | None = None,
    caseload: Mapping[str, int] | None = None,
    check: Check | None = None,
    new_id: NewItemId,
) -> Outcome:
    """The case after ``move`` by ``actor`` on ``today``, and every guard that failed.

    ``record`` is the case as loaded: open fields and sealed forms in one mapping, which
    is left as it was. ``forms`` ride with the move (``--from``) and are merged first.
    ``caseload`` holds the open cases of each caseworker, this case left out, for the
    caseload guard, which ``override`` (a reason in words) lifts when an authoriser
    acts. The move applies its effects, removes personal details where it minimises,
    enters the target state and summarises the forms into the open fields; the guards
    then judge the result. A reason the move does not take, or more forms than it takes,
    is a usage error (raised); ``check`` may raise for a record of the wrong shape.
    """
    case_id = str(record["case_id"])
    extra = flow.reasons_for(move, reason)
    forms = dict(forms or {})
    # One form rides with a move; reopening may bring the fresh consents it needs too,
    # since nothing can be recorded on a closed case before it reopens.
    if len(forms) > 1 and NEW_EPISODE not in move.effects:
        raise UsageError("--from holds one form for this move", case_id=case_id)
    failures = _permitted(flow, move.by, actor, record, move.id)
    if move.four_eyes and actor.id == record["caseworker"]:
        failures.append(
            Failure(
                move.four_eyes,
                "hard",
                "the case's own caseworker cannot authorise this (four eyes): another "
                + " or ".join(sorted(flow.authorisers))
                + " does",
            )
        )
    sealed = _sealed(record, schema)
    for name, item in forms.items():
        merge_form(sealed, name, item, schema, case_id, new_id)
    case = _document({k: record[k] for k in schema.open_fields}, sealed, schema.field_order)
    situation = _situation(
        case,
        record,
        actor,
        today,
        settings,
        flow,
        staff,
        reason=reason,
        override=override,
        caseload=caseload,
    )
    apply_effects(move, case, situation)
    if MINIMISE in move.effects:
        situation.personal_left = strip_personal(case, schema)
    enter_state(case, move.target, today)
    if override and CASELOAD in move.guards:
        note_override(case, override)
    sealed = {k: case[k] for k in schema.sealed_fields if k in case}
    open_fields = summarise({k: case[k] for k in schema.open_fields}, sealed, settings, today)
    return _judge(
        flow, [*move.guards, *extra], situation, schema, failures, open_fields, sealed, check
    )


def reassign(
    record: Mapping[str, Any],
    worker: Staff,
    actor: Staff,
    settings: Mapping[str, Any],
    today: dt.date,
    *,
    flow: Workflow,
    schema: CaseSchema,
    staff: Registry,
    reason: str | None,
    override: str | None = None,
    caseload: Mapping[str, int] | None = None,
    check: Check | None = None,
    new_id: NewItemId,
) -> Outcome:
    """The case with ``worker`` as its key caseworker from ``today``, and every guard of
    the reassignment rules that failed: who may reassign (an authoriser, a supervisor
    within their own team), in which states, and the new caseworker's caseload, which
    ``override`` lifts. The assignment form keeps who held the case and until when."""
    rules = flow.assignment
    reason = flow.check_assignment_reason(reason)
    case_id = str(record["case_id"])
    state = record["state"]
    if record["caseworker"] == worker.id:
        raise UsageError(f"{worker.id} is already the key caseworker", case_id=case_id)
    failures = _permitted(flow, rules.by, actor, record, "reassignment")
    if state not in rules.states:
        refuse_if_closed(state, case_id)
        failures.append(Failure(ROLE_AND_SCOPE, "hard", f"no reassignment in state {state}"))
    if flow.scopes.get(actor.role) == "team" and worker.team != actor.team:
        failures.append(Failure(ROLE_AND_SCOPE, "hard", "a supervisor reassigns within their team"))
    items = [dict(a) for a in record.get("assignment") or ()]
    for item in items:
        if item.get("role_on_case") == "key_caseworker" and "to" not in item:
            item["to"] = today.isoformat()
    new_item: dict[str, Any] = {
        "assignment_id": new_id("assignment", [str(a.get("assignment_id")) for a in items]),
        "staff_id": worker.id,
        "role_on_case": "key_caseworker",
        "from": today.isoformat(),
        "reason": reason,
        "authorised_by": actor.id,
    }
    if override:
        new_item["caseload_override_reason"] = override
    sealed = _sealed(record, schema)
    sealed["assignment"] = [*items, new_item]
    open_fields = {**_open(record, schema), "caseworker": worker.id, "team": worker.team}
    situation = _situation(
        _document(open_fields, sealed, schema.field_order),
        record,
        actor,
        today,
        settings,
        flow,
        staff,
        reason=reason,
        override=override,
        caseload=caseload,
    )
    return _judge(flow, rules.guards, situation, schema, failures, open_fields, sealed, check)


def record_event(
    record: Mapping[str, Any],
    event: Event,
    item: Any,
    actor: Staff,
    settings: Mapping[str, Any],
    today: dt.date,
    *,
    flow: Workflow,
    schema: CaseSchema,
    staff: Registry,
    check: Check | None = None,
    new_id: NewItemId,
) -> Outcome:
    """The case with one form ``item`` of ``event`` added or updated, without a change of
    state, and every guard that failed; ``item_id`` names the item."""
    case_id = str(record["case_id"])
    state = record["state"]
    form = event.form
    if CLOSED not in event.states:
        refuse_if_closed(state, case_id)
    failures = _permitted(flow, event.by, actor, record, f"recording {form}")
    if state not in event.states:
        failures.append(
            Failure(
                ROLE_AND_SCOPE,
                "hard",
                f"{form} is not recorded in state {state}; it is in: {', '.join(event.states)}",
            )
        )
    sealed = _sealed(record, schema)
    item_id = merge_form(sealed, form, item, schema, case_id, new_id)
    open_fields = _open(record, schema)
    situation = _situation(
        _document(open_fields, sealed, schema.field_order),
        record,
        actor,
        today,
        settings,
        flow,
        staff,
    )
    outcome = _judge(flow, event.guards, situation, schema, failures, open_fields, sealed, check)
    outcome.item_id = item_id
    return outcome


def _permitted(
    flow: Workflow, allowed: Iterable[str], actor: Staff, case: Mapping[str, Any], action: str
) -> list[Failure]:
    denied = flow.permission(allowed, actor.role, actor.id, actor.team, case, action)
    return [denied] if denied else []


def _open(record: Mapping[str, Any], schema: CaseSchema) -> dict[str, Any]:
    fields = set(schema.open_fields)
    return {k: v for k, v in record.items() if k in fields}


def _sealed(record: Mapping[str, Any], schema: CaseSchema) -> dict[str, Any]:
    forms = set(schema.sealed_fields)
    return {k: v for k, v in record.items() if k in forms}


def _document(
    open_fields: Mapping[str, Any], forms: Mapping[str, Any], order: Iterable[str]
) -> dict[str, Any]:
    """The whole record as one mapping in schema order (as `records.Record.document`)."""
    whole = {**open_fields, **forms}
    return {key: whole[key] for key in order if key in whole}


def _situation(
    case: dict[str, Any],
    before: Mapping[str, Any],
    actor: Staff,
    today: dt.date,
    settings: Mapping[str, Any],
    flow: Workflow,
    staff: Registry,
    *,
    reason: str | None = None,
    override: str | None = None,
    caseload: Mapping[str, int] | None = None,
) -> Situation:
    return Situation(
        record=case,
        before=before,
        actor_id=actor.id,
        actor_role=actor.role,
        today=today,
        settings=settings,
        active_caseworkers=frozenset(m.id for m in staff.active(CASEWORKER)),
        caseload=caseload or {},
        authorisers=flow.authorisers,
        reason=reason,
        override=override,
    )


def _judge(
    flow: Workflow,
    codes: Iterable[str],
    situation: Situation,
    schema: CaseSchema,
    failures: list[Failure],
    open_fields: dict[str, Any],
    forms: dict[str, Any],
    check: Check | None,
) -> Outcome:
    """The guards ``codes`` applied to the new record, after ``check``; a warning lets the
    action through, any other failure refuses it."""
    situation.record = _document(open_fields, forms, schema.field_order)
    if check is not None:
        check(situation.record)
    codes = list(dict.fromkeys(codes))

    def holds(guard: Guard, doc: Mapping[str, Any]) -> bool:
        return schema.holds(guard.code, guard.schema or {}, doc)

    found = flow.evaluate(codes, situation, holds)
    failed = {f.code: f for f in found}
    results = []
    for code in codes:
        if code in failed:
            result = WARN if failed[code].severity == "warn" else FAILED
        elif flow.guards[code].severity == OVERRIDE and situation.override:
            # Lifted by the override, or within the limit anyway: asked without it.
            lifted = flow.evaluate([code], replace(situation, override=None), holds)
            result = OVERRIDDEN if lifted else PASS
        else:
            result = PASS
        results.append((code, result))
    return Outcome(
        open_fields,
        forms,
        [*failures, *(f for f in found if f.severity != "warn")],
        [f for f in found if f.severity == "warn"],
        results=results,
    )


def merge_form(
    forms: dict[str, Any],
    form: str,
    item: Any,
    schema: CaseSchema,
    case_id: str,
    new_id: NewItemId,
) -> str:
    """Put one form into ``forms`` the way its schema's x-cmgit-mode says (SPEC section 4)
    and return its id; the items already there are replaced, never changed in place."""
    mode = schema.form_mode(form)
    if mode == "single":
        forms[form] = item
        return form
    if not isinstance(item, dict):
        raise SchemaError(
            f"the {form} form must be a mapping of fields",
            problems=[f"at /{form}: expected a mapping of fields"],
        )
    id_field = schema.form_id_field(form) or f"{form}_id"
    items: list[dict[str, Any]] = list(forms.get(form) or [])
    given = item.get(id_field)
    if given is not None:
        position = next((i for i, old in enumerate(items) if old.get(id_field) == given), None)
        if position is None:
            raise UsageError(
                f"{case_id} has no {form} with that id",
                hint=f"leave {id_field} out to add a new one",
            )
        if mode == "append":
            raise Refused(f"{form} entries are append-only; record a new one", case_id=case_id)
        if mode == "supersede" and items[position].get("status") == "superseded":
            raise Refused(f"that {form} was superseded and is kept as it was", case_id=case_id)
        items[position] = item
        forms[form] = items
        return str(given)
    item_id = new_id(form, [str(old.get(id_field)) for old in items])
    item = {id_field: item_id, **item}
    if mode == "supersede":
        items = [{**old, "status": "superseded"} for old in items]
    items.append(item)
    forms[form] = items
    return item_id


def strip_personal(case: dict[str, Any], schema: CaseSchema) -> int:
    """Remove every field the form schemas class as personal (P) from the sealed forms of
    ``case`` (guard G21: a case closed before registration keeps no personal details).
    Returns how many personal fields are left, which is none unless a P field is required
    by its schema (then it stays and the guard refuses)."""
    left = 0

    def walk(value: Any, node: Mapping[str, Any]) -> Any:
        nonlocal left
        if "$ref" in node:
            node = {
                **schema.resolve(node["$ref"]),
                **{k: v for k, v in node.items() if k != "$ref"},
            }
        if isinstance(value, dict):
            props = node.get("properties", {})
            required = set(node.get("required", ()))
            out = {}
            for key, item in value.items():
                sub = props.get(key, {})
                if sub.get("x-cmgit-class") == "P":
                    if key in required:
                        left += 1
                        out[key] = item
                    continue
                out[key] = walk(item, sub)
            return out
        if isinstance(value, list):
            return [walk(item, node.get("items", {})) for item in value]
        return value

    for form in schema.sealed_fields:
        if form in case:
            case[form] = walk(case[form], schema.case_properties[form])
    return left


def note_override(case: dict[str, Any], reason: str) -> None:
    """Keep a caseload override's reason, in words, in the sealed assignment record."""
    items = list(case.get("assignment") or ())
    if items:
        items[-1] = {**items[-1], "caseload_override_reason": reason}
        case["assignment"] = items
