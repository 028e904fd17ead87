"""``cmgit demo``: a synthetic programme built through the library, for trying cmgit out.

Everything here is invented. Every child's name carries a CANARY marker so that anyone
can grep a repository, a log or a built site for leaks.
"""

from __future__ import annotations

import datetime as dt
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import crypto, yamlio
from .errors import UsageError
from .progress import SILENT, Progress
from .registry import CASEWORKER, COORDINATOR, PROGRAMME_MANAGER, SUPERVISOR, Staff
from .store import Repository, init_repository

TEAMS = ("north", "south", "east")
CASEWORKERS_PER_TEAM = 3
GIVEN = ("Amina", "Yonas", "Selam", "Dawit", "Hana", "Tesfaye", "Mariam", "Omar", "Leila",
         "Samuel", "Ruth", "Ibrahim", "Fatima", "Kidane", "Aster", "Yusuf", "Nardos", "Ali")
FAMILY = ("Hassan", "Bekele", "Tesfay", "Abdi", "Mohammed", "Gebre", "Haile", "Osman",
          "Kebede", "Yohannes", "Ahmed", "Tadesse")
PLACES = ("Camp A, block 4", "Transit centre", "Border point east", "Host community, ward 2")


@dataclass
class Person:
    staff: Staff
    identities: tuple[crypto.Identity, ...]


def free_folder(parent: Path) -> Path:
    for n in range(1, 1000):
        candidate = parent / f"cmgit-demo-{n}"
        if not candidate.exists():
            return candidate
    raise UsageError("no free cmgit-demo-N folder here", hint="give a folder: cmgit demo DIR")


def _staff_plan() -> Iterator[tuple[str, str, str]]:
    yield "pm-001", PROGRAMME_MANAGER, "programme"
    for team in TEAMS:
        yield f"sv-{team}", SUPERVISOR, team
        for n in range(1, CASEWORKERS_PER_TEAM + 1):
            yield f"cw-{team}-{n}", CASEWORKER, team
        yield f"co-{team}", COORDINATOR, team
    yield "aud-001", "auditor", "programme"


def _make_people(keys: Path) -> dict[str, Person]:
    keys.mkdir(parents=True)
    people = {}
    for staff_id, role, team in _staff_plan():
        path = keys / f"{staff_id}.txt"
        secret, recipient = crypto.generate_identity()
        crypto.write_identity_file(path, secret, recipient)
        member = Staff(staff_id, role, team, recipient, None, True)
        people[staff_id] = Person(member, crypto.load_identities(path))
    return people


class Forms:
    """Plausible, schema-valid forms for one invented child."""

    def __init__(self, rng: random.Random, number: int, today: dt.date):
        self.rng = rng
        self.number = number
        self.today = today
        self.name = f"{rng.choice(GIVEN)} CANARY-NAME-{number:04d} {rng.choice(FAMILY)}"
        self.identified_on = today - dt.timedelta(days=rng.randint(20, 540))
        self.registered_on = self.identified_on + dt.timedelta(days=rng.randint(0, 6))
        age = rng.randint(2, 17)
        born = self.identified_on - dt.timedelta(days=age * 365 + rng.randint(0, 364))
        self.date_of_birth = born.isoformat()
        self.separation = rng.choice(
            ("unaccompanied", "separated", "with_primary_caregiver", "with_primary_caregiver",
             "accompanied_at_risk")
        )

    def identification(self, staff_id: str) -> dict[str, Any]:
        return {
            "identified_on": self.identified_on.isoformat(),
            "identified_by": staff_id,
            "identification_source": self.rng.choice(
                ("outreach_monitoring", "community_member", "self_referral_child",
                 "other_agency_referral", "immigration_actor")),
            "identification_context": self.rng.choice(
                ("transit_or_border", "camp_or_settlement", "host_country_recent_arrival")),
            "initial_concern_summary": f"CANARY-NOTE-{self.number:04d} concern noted at intake",
            "urgent_needs": self.rng.random() < 0.2,
        }

    def consent(self, staff_id: str, role: str) -> dict[str, Any]:
        item: dict[str, Any] = {
            "type": "informed_assent" if role == "child" else "informed_consent",
            "scopes": ["registration_and_services", "information_sharing_referral"],
            "given_by_role": role,
            "decision": "granted",
            "decision_on": self.registered_on.isoformat(),
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
            item["given_by_name"] = f"CANARY-NAME-{self.number:04d}-CARER"
        return item

    def registration(self, staff_id: str, criteria: list[str]) -> dict[str, Any]:
        with_family = self.separation in ("with_primary_caregiver", "accompanied_at_risk")
        doc: dict[str, Any] = {
            "registered_on": self.registered_on.isoformat(),
            "registered_by": staff_id,
            "registration_location": f"CANARY-PLACE-{self.number:04d} {self.rng.choice(PLACES)}",
            "registration_admin_area": self.rng.choice(("district-1", "district-2")),
            "child": {
                "full_name": self.name,
                "date_of_birth": self.date_of_birth,
                "dob_estimated": self.rng.random() < 0.4,
                "age_band": "5_11",
                "sex": self.rng.choice(("female", "male")),
                "languages": ["Tigrinya"],
            },
            "separation_status": self.separation,
            "current_care_arrangement": "parents" if with_family else self.rng.choice(
                ("kinship_care", "foster_care", "interim_care_centre")),
            "current_address": f"CANARY-ADDRESS-{self.number:04d}",
            "child_categories": [self.rng.choice(("refugee_or_asylum_seeker", "returnee",
                                                  "migrant_in_transit"))],
            "initial_protection_concerns": [self.rng.choice(
                ("neglect", "separation_from_family", "psychological_distress", "poverty"))],
            "vulnerability_criteria_met": [self.rng.choice(criteria)],
            "consent_refs": ["consent-1", "consent-2"],
            "interview_language": "CANARY-LANG Tigrinya",
        }
        return doc

    def follow_up(self, staff_id: str, days_after: int, successful: bool) -> dict[str, Any]:
        when = min(self.registered_on + dt.timedelta(days=days_after), self.today)
        return {
            "date": when.isoformat(),
            "conducted_by": staff_id,
            "phase": "in_case",
            "method": self.rng.choice(("home_visit", "phone_call", "meeting_child")),
            "planned": True,
            "contact_successful": successful,
            "child_seen": successful,
            "persons_met": ["child"] if successful else [],
            "new_concern": False,
            "next_follow_up_on": (when + dt.timedelta(days=14)).isoformat(),
            "issues_identified": f"CANARY-NOTE-{self.number:04d} visit notes",
        }


def _form_file(name: str, body: dict[str, Any]) -> bytes:
    return yamlio.dump({name: body}).encode("utf-8")


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
    people = _make_people(target / "identities")
    admin = people["pm-001"]
    repo_dir = target / "cases"
    init_repository(repo_dir, admin=admin.staff.id, recipient=admin.staff.recipient,
                    team=admin.staff.team, signing_key=None, prefix="CP",
                    programme="Demo child protection programme")
    repo = Repository.open(repo_dir)
    repo.settings_set(admin.identities, "reader_roles", "[coordinator]")
    for person in people.values():
        if person is not admin:
            repo.staff_add(admin.identities, person.staff)
    criteria = list(repo.settings["vulnerability_criteria"])
    workers = [p for p in people.values() if p.staff.role == CASEWORKER]
    shown: str | None = None
    with progress.task("Creating demo cases", cases) as advance:
        for number in range(1, cases + 1):
            worker = workers[number % len(workers)]
            forms = Forms(rng, number, today)
            ident = _form_file("identification", forms.identification(worker.staff.id))
            case_id = repo.new_case(worker.identities, ident, today=forms.identified_on)
            if number % 3 == 0:
                for role in ("child", "caregiver"):
                    repo.record_form(worker.identities, case_id, "consent",
                                     _form_file("consent", forms.consent(worker.staff.id, role)),
                                     today=forms.registered_on)
                repo.record_form(worker.identities, case_id, "registration",
                                 _form_file("registration",
                                            forms.registration(worker.staff.id, criteria)),
                                 today=forms.registered_on)
                for visit, ok in ((10, True), (24, False)):
                    repo.record_form(worker.identities, case_id, "follow_up",
                                     _form_file("follow_up",
                                                forms.follow_up(worker.staff.id, visit, ok)),
                                     today=today)
                if shown is None:
                    shown = case_id
            advance(1)
    shown = shown or repo.case_ids()[0]
    worker_key = target / "identities" / "cw-north-1.txt"
    owner = repo.load_open(shown).record.open["caseworker"]
    owner_key = target / "identities" / f"{owner}.txt"
    return f"""\
Demo programme ready: {cases} cases, {len(people)} staff in teams {", ".join(TEAMS)}.

  Case repository:  {repo_dir}
  Identities:       {target / "identities"}   (one per staff member, kept outside the repository)

A short tour:
  export PATH={Path(sys.executable).parent}:$PATH   # where this cmgit is installed
  cd {repo_dir}
  export CMGIT_IDENTITY={owner_key}
  cmgit whoami                      # who you are: {owner}
  cmgit show {shown}            # the case, decrypted for you
  cmgit validate {shown}
  git log --format='%h %an %s' -5   # the history: IDs and codes only, nothing personal
  git show HEAD -- records          # what anyone without a key sees: open fields, sealed text
  CMGIT_IDENTITY={worker_key} cmgit staff list
"""
