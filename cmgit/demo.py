"""``cmgit demo``: a synthetic programme built through the library, for trying cmgit out.

Everything here is invented. Every child's name carries a CANARY marker so that anyone
can grep a repository, a log or a built site for leaks. Cases are walked through the
real transitions by the staff who would act, on the dates they would act, so that the
history, `cmgit log`, `cmgit list` and `cmgit due` show a programme as it would be.
"""

from __future__ import annotations

import datetime as dt
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import crypto, signing, yamlio
from .errors import UsageError
from .progress import SILENT, Progress
from .registry import CASEWORKER, COORDINATOR, PROGRAMME_MANAGER, SUPERVISOR, Staff
from .store import Repository, init_repository

TEAMS = ("north", "south", "east")
CASEWORKERS_PER_TEAM = 4
GIVEN = (
    "Amina",
    "Yonas",
    "Selam",
    "Dawit",
    "Hana",
    "Tesfaye",
    "Mariam",
    "Omar",
    "Leila",
    "Samuel",
    "Ruth",
    "Ibrahim",
    "Fatima",
    "Kidane",
    "Aster",
    "Yusuf",
    "Nardos",
    "Ali",
)
FAMILY = (
    "Hassan",
    "Bekele",
    "Tesfay",
    "Abdi",
    "Mohammed",
    "Gebre",
    "Haile",
    "Osman",
    "Kebede",
    "Yohannes",
    "Ahmed",
    "Tadesse",
)
PLACES = ("Camp A, block 4", "Transit centre", "Border point east", "Host community, ward 2")

# Where demo cases end up, with weights: a programme with something in every step.
DESTINATIONS = (
    ("identified", 6),
    ("registered", 7),
    ("assessment", 10),
    ("immediate_action", 4),
    ("case_planning", 9),
    ("implementation", 22),
    ("follow_up_review", 8),
    ("closure_pending", 6),
    ("post_closure_monitoring", 8),
    ("archived", 8),
    ("closed_no_concern", 4),
    ("closed_consent_declined", 3),
    ("closed_death", 1),
    ("closed_inaccessible", 2),
    ("reopened", 2),
)


@dataclass
class Person:
    staff: Staff
    identities: tuple[crypto.Identity, ...]
    signing_key: Path | None = None


def free_folder(parent: Path) -> Path:
    for n in range(1, 1000):
        candidate = parent / f"cmgit-demo-{n}"
        if not candidate.exists():
            return candidate
    raise UsageError("no free cmgit-demo-N folder here", hint="give a folder: cmgit demo DIR")


def staff_plan() -> Iterator[tuple[str, str, str]]:
    yield "pm-001", PROGRAMME_MANAGER, "programme"
    for team in TEAMS:
        yield f"sv-{team}", SUPERVISOR, team
        for n in range(1, CASEWORKERS_PER_TEAM + 1):
            yield f"cw-{team}-{n}", CASEWORKER, team
    yield "co-north", COORDINATOR, "north"
    yield "aud-001", "auditor", "programme"


def make_people(keys: Path, plan: Iterator[tuple[str, str, str]]) -> dict[str, Person]:
    keys.mkdir(parents=True, exist_ok=True)
    people = {}
    for staff_id, role, team in plan:
        path = keys / f"{staff_id}.txt"
        secret, recipient = crypto.generate_identity()
        crypto.write_identity_file(path, secret, recipient)
        key_path = keys / f"{staff_id}.ssh"
        public = signing.generate_key(key_path)
        member = Staff(staff_id, role, team, recipient, public, True)
        people[staff_id] = Person(member, crypto.load_identities(path), key_path)
    return people


def form_file(name: str, body: dict[str, Any]) -> bytes:
    return yamlio.dump({name: body}).encode("utf-8")


class Forms:
    """Plausible, schema-valid forms for one invented child."""

    def __init__(
        self,
        rng: random.Random,
        number: int,
        *,
        separation: str | None = None,
        age: int | None = None,
    ):
        self.rng = rng
        self.number = number
        self.tag = f"{number:04d}"
        self.name = f"{rng.choice(GIVEN)} CANARY-NAME-{self.tag} {rng.choice(FAMILY)}"
        self.age = age if age is not None else rng.randint(2, 17)
        self.separation = separation or rng.choice(
            (
                "unaccompanied",
                "separated",
                "with_primary_caregiver",
                "with_primary_caregiver",
                "accompanied_at_risk",
            )
        )

    @property
    def uasc(self) -> bool:
        return self.separation in ("unaccompanied", "separated")

    def note(self, what: str) -> str:
        return f"CANARY-NOTE-{self.tag} {what}"

    def identification(self, staff_id: str, day: dt.date) -> dict[str, Any]:
        return {
            "identified_on": day.isoformat(),
            "identified_by": staff_id,
            "identification_source": self.rng.choice(
                (
                    "outreach_monitoring",
                    "community_member",
                    "self_referral_child",
                    "other_agency_referral",
                    "immigration_actor",
                )
            ),
            "identification_context": self.rng.choice(
                ("transit_or_border", "camp_or_settlement", "host_country_recent_arrival")
            ),
            "initial_concern_summary": self.note("concern noted at first contact"),
            "urgent_needs": self.rng.random() < 0.2,
        }

    def consent(
        self,
        staff_id: str,
        role: str,
        day: dt.date,
        *,
        decision: str = "granted",
        scopes: tuple[str, ...] = ("registration_and_services", "information_sharing_referral"),
    ) -> dict[str, Any]:
        item: dict[str, Any] = {
            "type": "informed_assent" if role == "child" else "informed_consent",
            "scopes": list(scopes),
            "given_by_role": role,
            "decision": decision,
            "decision_on": day.isoformat(),
            "method": "written_signature",
            "explained_items": {
                "services_and_options": True,
                "risks_and_benefits": True,
                "information_collected_and_use": True,
                "confidentiality_and_limits": True,
            },
            "language_used": "CANARY-LANG Tigrinya",
            "recorded_by": staff_id,
        }
        if role != "child":
            item["given_by_name"] = f"CANARY-NAME-{self.tag}-ADULT"
        return item

    def registration(self, staff_id: str, day: dt.date, criteria: list[str]) -> dict[str, Any]:
        born = day - dt.timedelta(days=self.age * 365 + self.rng.randint(0, 300))
        with_family = not self.uasc
        return {
            "registered_on": day.isoformat(),
            "registered_by": staff_id,
            "registration_location": f"CANARY-PLACE-{self.tag} {self.rng.choice(PLACES)}",
            "registration_admin_area": self.rng.choice(("district-1", "district-2")),
            "child": {
                "full_name": self.name,
                "date_of_birth": born.isoformat(),
                "dob_estimated": self.rng.random() < 0.4,
                "age_band": "5_11",
                "sex": self.rng.choice(("female", "male")),
                "languages": ["Tigrinya"],
            },
            "separation_status": self.separation,
            "current_care_arrangement": "parents"
            if with_family
            else self.rng.choice(("kinship_care", "foster_care", "interim_care_centre")),
            "current_address": f"CANARY-ADDRESS-{self.tag}",
            "child_categories": [
                self.rng.choice(("refugee_or_asylum_seeker", "returnee", "migrant_in_transit"))
            ],
            "initial_protection_concerns": [
                self.rng.choice(
                    ("neglect", "separation_from_family", "psychological_distress", "poverty")
                )
            ],
            "vulnerability_criteria_met": [self.rng.choice(criteria)],
            "consent_refs": ["consent-1", "consent-2"],
            "interview_language": "CANARY-LANG Tigrinya",
        }

    def risk_assessment(
        self, staff_id: str, day: dt.date, level: str, immediate: bool = False
    ) -> dict[str, Any]:
        item: dict[str, Any] = {
            "assessed_on": day.isoformat(),
            "assessed_by": staff_id,
            "hazards": ["separation_from_family"],
            "hazard_notes": self.note("hazards seen"),
            "protective_factors": self.note("protective factors"),
            "community_capacity": self.note("community capacity"),
            "likelihood": level,
            "severity": level,
            "risk_level": level,
            "immediate_risk": immediate,
            "next_risk_review_on": (day + dt.timedelta(days=30)).isoformat(),
        }
        if immediate:
            item["immediate_risk_reason"] = self.note("immediate danger")
        return item

    def immediate_action(self, staff_id: str, day: dt.date, *, done: bool) -> dict[str, Any]:
        item: dict[str, Any] = {
            "action_type": self.rng.choice(("medical_care", "safe_accommodation")),
            "decided_on": day.isoformat(),
            "decided_by": staff_id,
            "decision_agreed_with": ["supervisor"],
            "supervisor_informed_on": day.isoformat(),
            "description": self.note("urgent protective action"),
        }
        if done:
            item.update(
                completed_on=day.isoformat(), outcome=self.note("child safe"), child_safe_now=True
            )
        return item

    def assessment(
        self,
        staff_id: str,
        start: dt.date,
        end: dt.date,
        *,
        phase: str = "initial",
        outcome: str = "open_case",
        level: str = "medium",
    ) -> dict[str, Any]:
        item: dict[str, Any] = {
            "phase": phase,
            "started_on": start.isoformat(),
            "completed_on": end.isoformat(),
            "assessed_by": staff_id,
            "child_participated": True,
            "child_views": self.note("the child's views"),
            "protection_concerns": ["separation_from_family"],
            "protective_factors": self.note("protective factors"),
            "strengths_resilience": self.note("strengths"),
            "immediate_risk": False,
            "recommended_risk_level": level,
            "bia_required": self.uasc,
            "outcome": outcome,
        }
        if outcome == "open_case":
            item["needs"] = [
                {
                    "need_id": "N1",
                    "domain": "care_arrangement",
                    "urgency": "short_term",
                    "description": self.note("stable care"),
                    "addressed_by": "direct",
                },
                {
                    "need_id": "N2",
                    "domain": "education",
                    "urgency": "long_term",
                    "description": self.note("back to school"),
                    "addressed_by": "referral",
                },
            ]
        return item

    def bia(self, staff_id: str, day: dt.date) -> dict[str, Any]:
        return {
            "trigger": "uasc_identified",
            "conducted_on": day.isoformat(),
            "conducted_by": staff_id,
            "child_views": self.note("views at the BIA"),
            "findings": self.note("BIA findings"),
            "recommendation": "continue_case_plan",
        }

    def ftr(self, day: dt.date) -> dict[str, Any]:
        return {"status": "in_progress", "initiated_on": day.isoformat()}

    def referral(self, staff_id: str, day: dt.date, service: str) -> dict[str, Any]:
        return {
            "referred_on": day.isoformat(),
            "referred_by": staff_id,
            "service_type": service,
            "provider_id": "PRV-01",
            "urgency": "routine",
            "reason": self.note("why referred"),
            "consent_ref": "consent-1",
            "information_shared": ["registration_basic"],
            "method": "referral_form",
            "status": "accepted",
            "status_updated_on": day.isoformat(),
        }

    def case_plan(
        self, staff_id: str, day: dt.date, *, achieved: bool = False, version: int = 1
    ) -> dict[str, Any]:
        status = "achieved" if achieved else "in_progress"
        return {
            "version": version,
            "status": "draft",
            "plan_type": "case_plan",
            "based_on_assessment_id": "assessment-1",
            "intended_result": self.note("what the plan is for"),
            "recipients": ["child", "family"],
            "objectives": [
                {
                    "objective_id": "O1",
                    "need_ids": ["N1"],
                    "description": self.note("care"),
                    "indicator": self.note("indicator"),
                    "target_date": (day + dt.timedelta(days=90)).isoformat(),
                    "status": status,
                },
                {
                    "objective_id": "O2",
                    "need_ids": ["N2"],
                    "description": self.note("school"),
                    "indicator": self.note("indicator"),
                    "target_date": (day + dt.timedelta(days=120)).isoformat(),
                    "status": status,
                },
            ],
            "actions": [
                {
                    "action_id": "A1",
                    "objective_id": "O1",
                    "description": self.note("visits"),
                    "intervention_type": "caseworker_direct_support",
                    "direct_or_referral": "direct",
                    "responsible_type": "caseworker",
                    "responsible_party": staff_id,
                    "location": self.note("where"),
                    "timeframe_horizon": "short_term",
                    "status": status,
                },
                {
                    "action_id": "A2",
                    "objective_id": "O2",
                    "description": self.note("enrol"),
                    "intervention_type": "education",
                    "direct_or_referral": "referral",
                    "responsible_type": "agency",
                    "responsible_party": "PRV-01",
                    "location": self.note("school"),
                    "timeframe_horizon": "long_term",
                    "status": status,
                },
            ],
            "monitoring": {
                "follow_up_interval_days": 14,
                "next_review_date": (day + dt.timedelta(days=60)).isoformat(),
            },
            "do_no_harm_check": {"done": True},
            "participation": {
                "child_participated": True,
                "child_views": self.note("child agrees"),
                "caregiver_participated": True,
            },
            "signed_by_caseworker": {"staff_id": staff_id, "date": day.isoformat()},
        }

    def follow_up(
        self, staff_id: str, day: dt.date, *, successful: bool = True, phase: str = "in_case"
    ) -> dict[str, Any]:
        return {
            "date": day.isoformat(),
            "conducted_by": staff_id,
            "phase": phase,
            "method": self.rng.choice(("home_visit", "phone_call", "meeting_child")),
            "planned": True,
            "contact_successful": successful,
            "child_seen": successful,
            "persons_met": ["child"] if successful else [],
            "new_concern": False,
            "next_follow_up_on": (day + dt.timedelta(days=14)).isoformat(),
            "issues_identified": self.note("visit notes"),
        }

    def review(self, staff_id: str, day: dt.date, outcome: str) -> dict[str, Any]:
        done = outcome == "propose_closure"
        return {
            "date": day.isoformat(),
            "reviewed_by": staff_id,
            "participants": ["child", "caseworker"],
            "plan_version_reviewed": 1,
            "objective_status": [
                {"objective_id": o, "status": "achieved" if done else "in_progress"}
                for o in ("O1", "O2")
            ],
            "action_status": [
                {"action_id": a, "status": "achieved" if done else "in_progress"}
                for a in ("A1", "A2")
            ],
            "services_confirmed": True,
            "services_effective": "yes" if done else "partly",
            "plan_still_relevant": True,
            "new_concerns": False,
            "risk_level": "low",
            "child_views": self.note("views at review"),
            "outcome": outcome,
            "next_review_on": (day + dt.timedelta(days=90)).isoformat(),
        }

    def closure(self, staff_id: str, day: dt.date, reason: str) -> dict[str, Any]:
        return {
            "closure_reason": reason,
            "proposed_on": day.isoformat(),
            "proposed_by": staff_id,
            "discussion_with_child_family_on": day.isoformat(),
            "child_agreement": "agreed",
            "family_agreement": "agreed",
            "objectives_summary": self.note("objectives reached"),
            "community_support_available": self.note("community support"),
            "statutory_support_access": self.note("statutory support"),
            "reacceptance_conditions_explained": True,
        }

    def conference(self, staff_id: str, day: dt.date) -> dict[str, Any]:
        return {
            "date": day.isoformat(),
            "type": "closure",
            "chaired_by": staff_id,
            "participants": [{"role": "caseworker", "organisation_type": "own_agency"}],
            "child_attended": False,
            "family_attended": False,
            "referenced_by_case_number_only": True,
            "progress_summary": self.note("progress"),
            "difficulties": self.note("none left"),
            "decision_codes": ["close"],
            "decisions_text": self.note("close the case"),
            "outcome_communicated_to_child_family_on": day.isoformat(),
        }

    def monitoring(
        self, start: dt.date, months: int = 3, *, outcome: str | None = None
    ) -> dict[str, Any]:
        end = _add_months(start, months)
        item: dict[str, Any] = {
            "started_on": start.isoformat(),
            "min_end_date": end.isoformat(),
            "interval_days": 30,
            "follow_up_ids": [],
        }
        if outcome:
            item["monitoring_outcome"] = outcome
        return item

    def reopen(self, staff_id: str, day: dt.date) -> dict[str, Any]:
        return {
            "reopened_on": day.isoformat(),
            "reason": self.note("reason to reopen"),
            "new_concern_summary": self.note("new concern"),
            "authorised_by": staff_id,
        }


def _add_months(day: dt.date, months: int) -> dt.date:
    from .guards import add_months

    return add_months(day, months)


class Journey:
    """One case walked through the procedure by its caseworker and supervisor."""

    def __init__(
        self,
        repo: Repository,
        forms: Forms,
        worker: Person,
        supervisor: Person,
        start: dt.date,
        criteria: list[str],
    ):
        self.repo = repo
        self.forms = forms
        self.worker = worker
        self.supervisor = supervisor
        self.day = start
        self.criteria = criteria
        self.case_id = ""
        # Ids cmgit gave to items the later forms refer to.
        self.consent_ids: list[str] = []
        self.assessment_id: str | None = None

    @property
    def cw(self) -> str:
        return self.worker.staff.id

    def wait(self, days: int) -> None:
        self.day += dt.timedelta(days=days)

    def acting(self, person: Person) -> tuple[crypto.Identity, ...]:
        """The person at the keyboard: their identity, and their key to sign with."""
        self.repo.signing_key_path = person.signing_key
        return person.identities

    def record(self, form: str, body: dict[str, Any], by: Person | None = None) -> str:
        return self.repo.record_form(
            self.acting(by or self.worker),
            self.case_id,
            form,
            form_file(form, body),
            today=self.day,
        )

    def move(
        self,
        target: str,
        *,
        by: Person | None = None,
        reason: str | None = None,
        form: tuple[str, dict[str, Any]] | None = None,
    ) -> None:
        data = form_file(*form) if form else None
        self.repo.move(
            self.acting(by or self.worker),
            self.case_id,
            target,
            today=self.day,
            reason=reason,
            form_data=data,
        )

    # -- the steps ---------------------------------------------------------------------

    def identify(self) -> str:
        ident = form_file("identification", self.forms.identification(self.cw, self.day))
        self.case_id = self.repo.new_case(self.acting(self.worker), ident, today=self.day)
        return self.case_id

    def consents(self, adult_decision: str = "granted") -> None:
        adult = "legal_guardian" if self.forms.uasc else "caregiver"
        self.wait(1)
        self.consent_ids = [
            self.record("consent", self.forms.consent(self.cw, "child", self.day)),
            self.record(
                "consent", self.forms.consent(self.cw, adult, self.day, decision=adult_decision)
            ),
        ]

    def register(self) -> None:
        self.consents()
        registration = self.forms.registration(self.cw, self.day, self.criteria)
        registration["consent_refs"] = self.consent_ids
        self.record("registration", registration)
        self.move("registered")

    def assess(self, level: str = "medium") -> None:
        self.wait(2)
        self.move("assessment")
        self.record("risk_assessment", self.forms.risk_assessment(self.cw, self.day, level))
        self.wait(5)
        self.assessment_id = self.record(
            "assessment",
            self.forms.assessment(self.cw, self.day - dt.timedelta(days=5), self.day, level=level),
        )
        if self.forms.uasc:
            self.record("bia", self.forms.bia(self.cw, self.day))
            self.record("ftr", self.forms.ftr(self.day))
            referral = self.forms.referral(self.cw, self.day, "child_protection_authority")
            referral["consent_ref"] = self.consent_ids[0]
            self.record("referral", referral)

    def immediate_action(self) -> None:
        self.wait(1)
        self.record(
            "risk_assessment", self.forms.risk_assessment(self.cw, self.day, "high", immediate=True)
        )
        self.record("immediate_action", self.forms.immediate_action(self.cw, self.day, done=False))
        self.move("immediate_action")

    def plan(self) -> None:
        self.wait(3)
        self.move("case_planning")
        self.wait(4)
        plan = self.forms.case_plan(self.cw, self.day)
        if self.assessment_id:
            plan["based_on_assessment_id"] = self.assessment_id
        self.record("case_plan", plan)

    def approve(self) -> None:
        self.wait(2)
        self.move("implementation", by=self.supervisor)

    def follow_ups(self, count: int, every: int = 12) -> None:
        for _ in range(count):
            self.wait(every)
            self.record("follow_up", self.forms.follow_up(self.cw, self.day))

    def review(self, outcome: str) -> None:
        # Progress is the review's objective_status; the plan stays as it was approved.
        self.record("review", self.forms.review(self.cw, self.day, outcome))
        self.move("follow_up_review")

    def propose_closure(self) -> None:
        self.wait(2)
        self.move(
            "closure_pending",
            reason="objectives_met",
            form=("closure", self.forms.closure(self.cw, self.day, "objectives_met")),
        )

    def authorise_closure(self) -> None:
        self.wait(31)
        conference = self.record(
            "case_conference", self.forms.conference(self.supervisor.staff.id, self.day)
        )
        closure = self.forms.closure(self.cw, self.day - dt.timedelta(days=31), "objectives_met")
        closure["case_conference_id"] = conference
        self.record("closure", closure)
        self.move(
            "post_closure_monitoring",
            by=self.supervisor,
            form=("post_closure_monitoring", self.forms.monitoring(self.day)),
        )

    def monitor_and_archive(self) -> None:
        start = self.day
        for _ in range(3):
            self.wait(28)
            self.record("follow_up", self.forms.follow_up(self.cw, self.day, phase="post_closure"))
        self.wait(8)
        self.move(
            "closed",
            by=self.supervisor,
            form=("post_closure_monitoring", self.forms.monitoring(start, outcome="no_concerns")),
        )

    def close(self, reason: str, *, form: dict[str, Any] | None = None) -> None:
        self.wait(2)
        self.move(
            "closed", by=self.supervisor, reason=reason, form=("closure", form) if form else None
        )

    def reopen(self) -> None:
        self.wait(20)
        self.consents()
        self.move(
            "registered",
            by=self.supervisor,
            form=("reopen", self.forms.reopen(self.supervisor.staff.id, self.day)),
        )


# Days a journey needs to reach each destination, so that it ends before today.
DURATION = {
    "identified": 5,
    "registered": 10,
    "assessment": 20,
    "immediate_action": 15,
    "case_planning": 30,
    "implementation": 60,
    "follow_up_review": 90,
    "closure_pending": 110,
    "post_closure_monitoring": 160,
    "archived": 260,
    "closed_no_concern": 30,
    "closed_consent_declined": 10,
    "closed_death": 70,
    "closed_inaccessible": 120,
    "reopened": 300,
}


OPEN_DESTINATIONS = (
    "registered",
    "assessment",
    "immediate_action",
    "case_planning",
    "implementation",
    "follow_up_review",
    "closure_pending",
)


def walk(journey: Journey, destination: str, today: dt.date | None = None) -> None:
    """Take a case from first contact to ``destination`` through the real transitions;
    an open case then gets a recent visit, as a working caseworker would record."""
    _walk(journey, destination)
    if today is not None and destination in OPEN_DESTINATIONS:
        latest = today - dt.timedelta(days=journey.forms.rng.randint(0, 20))
        if latest > journey.day:
            journey.day = latest
            journey.record("follow_up", journey.forms.follow_up(journey.cw, latest))


def _walk(journey: Journey, destination: str) -> None:
    j = journey
    j.identify()
    if destination == "identified":
        return
    if destination == "closed_consent_declined":
        j.consents(adult_decision="declined")
        j.close("consent_declined")
        return
    j.register()
    if destination == "registered":
        return
    if destination == "immediate_action":
        j.immediate_action()
        return
    if destination == "closed_no_concern":
        j.wait(2)
        j.move("assessment")
        j.wait(5)
        j.record(
            "assessment",
            j.forms.assessment(
                j.cw, j.day - dt.timedelta(days=5), j.day, outcome="no_further_action", level="low"
            ),
        )
        j.close("no_protection_concern")
        return
    j.assess(level=j.forms.rng.choice(("low", "medium", "medium", "high")))
    if destination == "assessment":
        return
    j.plan()
    if destination == "case_planning":
        return
    j.approve()
    j.follow_ups(2)
    if destination == "implementation":
        return
    if destination == "closed_death":
        j.close("death")
        return
    if destination == "closed_inaccessible":
        for _ in range(3):
            j.wait(16)
            j.record("follow_up", j.forms.follow_up(j.cw, j.day, successful=False))
        j.close("inaccessible", form={**j.forms.closure(j.cw, j.day, "inaccessible")})
        return
    j.follow_ups(2)
    j.review("propose_closure")
    if destination == "follow_up_review":
        return
    j.propose_closure()
    if destination == "closure_pending":
        return
    j.authorise_closure()
    if destination == "post_closure_monitoring":
        return
    j.monitor_and_archive()
    if destination == "reopened":
        j.reopen()


def build(
    target: Path,
    *,
    cases: int = 300,
    seed: int = 7,
    today: dt.date,
    progress: Progress = SILENT,
) -> str:
    """Make the programme in ``target`` and return the tour to print."""
    if target.exists() and any(target.iterdir()):
        raise UsageError("demo folder is not empty", hint="give a new folder: cmgit demo DIR")
    rng = random.Random(seed)  # noqa: S311 - invented data, not secrets
    people = make_people(target / "identities", staff_plan())
    admin = people["pm-001"]
    repo_dir = target / "cases"
    init_repository(
        repo_dir,
        admin=admin.staff.id,
        recipient=admin.staff.recipient,
        team=admin.staff.team,
        signing_key=admin.staff.signing_key,
        prefix="CP",
        programme="Demo child protection programme",
        signing_key_path=admin.signing_key,
    )
    repo = Repository.open(repo_dir)
    repo.signing_key_path = admin.signing_key
    repo.settings_set(admin.identities, "reader_roles", "[coordinator]")
    for person in people.values():
        if person is not admin:
            repo.staff_add(admin.identities, person.staff)
    criteria = list(repo.settings["vulnerability_criteria"])
    workers = [p for p in people.values() if p.staff.role == CASEWORKER]
    places, weights = zip(*DESTINATIONS, strict=True)
    shown: dict[str, str] = {}
    with progress.task("Creating demo cases", cases) as advance:
        for number in range(1, cases + 1):
            worker = workers[number % len(workers)]
            supervisor = people[f"sv-{worker.staff.team}"]
            destination = rng.choices(places, weights)[0]
            start = today - dt.timedelta(days=DURATION[destination] + rng.randint(5, 120))
            journey = Journey(repo, Forms(rng, number), worker, supervisor, start, criteria)
            walk(journey, destination, today)
            shown.setdefault(destination, journey.case_id)
            advance(1)
    return tour(target, repo, shown, len(people), cases)


def tour(target: Path, repo: Repository, shown: dict[str, str], staff: int, cases: int) -> str:
    repo_dir = target / "cases"
    example = shown.get("implementation") or next(iter(shown.values()))
    archived = shown.get("archived") or example
    owner = repo.load_open(example).record.open["caseworker"]
    owner_key = target / "identities" / f"{owner}.txt"
    return f"""\
Demo programme ready: {cases} cases, {staff} staff in teams {", ".join(TEAMS)}.

  Case repository:  {repo_dir}
  Identities:       {target / "identities"}
                    (an age identity and an SSH signing key per person, outside the repository)

A short tour:
  export PATH={Path(sys.executable).parent}:$PATH   # where this cmgit is installed
  cd {repo_dir}
  cmgit list --team north           # cases by step, from open fields: no key needed
  cmgit due                         # follow-ups and reviews due, by risk level
  cmgit log {archived}            # one case's whole path, from git history
  export CMGIT_IDENTITY={owner_key}
  cmgit whoami                      # who you are: {owner}
  cmgit show {example}            # the case, decrypted for you
  git log --format='%h %an %s' -5   # the history: IDs and codes only, nothing personal
  git show --no-textconv HEAD       # what anyone without a key sees: open fields, sealed entries
  cmgit audit                       # every commit signed by its actor, by the rules: ok
"""
