"""The acceptance scenarios of the domain analysis (section 9), through the command line.

Each scenario drives a case with `cmgit` commands as the staff who would act, on the
days they would act (CMGIT_TODAY). Every accepted step is checked (exit 0, one commit,
the state shown by `cmgit show --json`); every refusal names its guard (exit 4, or 3
for a schema refusal) and leaves HEAD, the work tree and the index as they were. At the
end `cmgit log --json` must reproduce the case's path and no commit message may carry
anything personal (every invented value holds the word CANARY).

Authorisations (plan approval, closure, archive, reopening) are run by the supervisor
(sv-north): the workflow data puts them in the `authorisers` group with a four-eyes
guard, so the case's own caseworker gets GA (role) and the four-eyes code.

A few steps of the scenarios do not map one-to-one on the implementation; each such
place says so in a comment marked "Reading:".
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import random
import re
from pathlib import Path
from typing import Any

import yaml
from click.testing import Result

from cmgit import demo, ids

from .conftest import CANARY, Programme, form

WORKFLOW = yaml.safe_load(
    (Path(__file__).resolve().parent.parent / "schemas" / "workflow.yaml").read_text()
)
# (from, to) -> the ids of the transitions of the table that make that move.
EDGES: dict[tuple[str, str], set[str]] = {}
for _tid, _t in WORKFLOW["transitions"].items():
    for _source in _t["from"]:
        EDGES.setdefault((_source, _t["to"]), set()).add(_tid)
CODE_LINE = re.compile(r"^  (G[A-Z0-9]+[a-z]*): (.*)$")

SV = "sv-north"
CW = "cw-north-1"


def failing_codes(stderr: str) -> list[str]:
    """The guard codes a refusal lists as failing (warnings left out)."""
    codes = []
    for line in stderr.splitlines():
        match = CODE_LINE.match(line)
        if match and not match.group(2).endswith("(warning)"):
            codes.append(match.group(1))
    return codes


class Case:
    """One case driven through the command line, with its own calendar."""

    def __init__(
        self,
        programme: Programme,
        forms: demo.Forms,
        day: dt.date,
        cw: str = CW,
        sv: str = SV,
        case_id: str = "",
    ):
        self.p = programme
        self.f = forms
        self.day = day
        self.cw = cw
        self.sv = sv
        self.id = case_id
        self.current = ""

    @classmethod
    def from_journey(cls, programme: Programme, journey: demo.Journey) -> Case:
        case = cls(
            programme,
            journey.forms,
            journey.day,
            journey.cw,
            journey.supervisor.staff.id,
            journey.case_id,
        )
        case.state()
        return case

    # -- calendar and plumbing ----------------------------------------------------------

    def wait(self, days: int) -> None:
        self.day += dt.timedelta(days=days)

    @property
    def today(self) -> str:
        return self.day.isoformat()

    def cli(self, *args: str, as_: str | None = None, today: str | None = None) -> Result:
        return self.p.cli(*args, as_=as_ or self.cw, today=today or self.today)

    def file(self, name: str, body: dict[str, Any]) -> str:
        return self.p.form_file(name, {name: body})

    def head(self) -> str:
        return self.p.git("rev-parse", "HEAD").strip()

    def ok(self, *args: str, as_: str | None = None) -> Result:
        """A change that must be accepted: exit 0 and exactly one new commit."""
        before = self.head()
        result = self.cli(*args, as_=as_)
        assert result.exit_code == 0, result.output
        assert self.p.git("rev-list", "--count", f"{before}..HEAD").strip() == "1"
        assert self.p.git("status", "--porcelain") == ""
        return result

    def refused(
        self,
        codes: list[str],
        *args: str,
        as_: str | None = None,
        exit_code: int = 4,
        absent: tuple[str, ...] = (),
    ) -> Result:
        """A change that must be refused with these guard codes, changing nothing."""
        before = self.p.state()
        result = self.cli(*args, as_=as_)
        assert result.exit_code == exit_code, result.output
        assert result.stdout == ""
        listed = failing_codes(result.stderr)
        for code in codes:
            if exit_code == 4:
                assert code in listed, (code, result.stderr)
            else:
                assert code in result.stderr, (code, result.stderr)
        for code in absent:
            assert code not in listed, (code, result.stderr)
        assert CANARY not in result.output
        assert self.p.state() == before
        return result

    # -- the verbs ------------------------------------------------------------------------

    def new(self, identification: dict[str, Any]) -> str:
        result = self.ok("new", "--from", self.file("identification", identification))
        self.id = result.stdout.strip()
        assert ids.check_case_id(self.id) == self.id
        assert self.state() == "identified"
        return self.id

    def record(self, name: str, body: dict[str, Any], as_: str | None = None) -> str:
        state = self.current
        result = self.ok("record", self.id, name, "--from", self.file(name, body), as_=as_)
        prefix = f"{self.id}: recorded "
        assert result.stdout.startswith(prefix), result.stdout
        assert self.state() == state  # an event: no change of state
        return result.stdout[len(prefix) :].strip()

    def move_args(
        self, target: str, reason: str | None, form_: tuple[str, dict[str, Any]] | None
    ) -> list[str]:
        args = ["move", self.id, target]
        if reason:
            args += ["--reason", reason]
        if form_:
            args += ["--from", self.file(*form_)]
        return args

    def move(
        self,
        target: str,
        *,
        reason: str | None = None,
        form_: tuple[str, dict[str, Any]] | None = None,
        as_: str | None = None,
    ) -> Result:
        source = self.state()
        result = self.ok(*self.move_args(target, reason, form_), as_=as_)
        said = re.fullmatch(rf"{self.id}: {source} -> {target} \((T\w+)\)", result.stdout.strip())
        assert said and said.group(1) in EDGES[(source, target)], result.stdout
        assert self.state() == target
        return result

    def refuse_move(
        self,
        codes: list[str],
        target: str,
        *,
        reason: str | None = None,
        form_: tuple[str, dict[str, Any]] | None = None,
        as_: str | None = None,
        exit_code: int = 4,
        absent: tuple[str, ...] = (),
    ) -> Result:
        return self.refused(
            codes,
            *self.move_args(target, reason, form_),
            as_=as_,
            exit_code=exit_code,
            absent=absent,
        )

    def refuse_record(
        self,
        codes: list[str],
        name: str,
        body: dict[str, Any],
        *,
        as_: str | None = None,
        exit_code: int = 4,
    ) -> Result:
        return self.refused(
            codes,
            "record",
            self.id,
            name,
            "--from",
            self.file(name, body),
            as_=as_,
            exit_code=exit_code,
        )

    def show(self) -> dict[str, Any]:
        result = self.cli("show", self.id, "--json", as_=self.sv)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def state(self) -> str:
        self.current = str(self.show()["state"])
        return self.current

    def listed(self, *extra: str) -> dict[str, Any]:
        """This case's row in `cmgit list --json` (keyless)."""
        result = self.p.cli("list", "--json", *extra, as_=None, today=self.today)
        assert result.exit_code == 0, result.output
        rows = [r for r in json.loads(result.stdout) if r["case_id"] == self.id]
        assert len(rows) == 1
        return rows[0]  # type: ignore[no-any-return]

    def due(self, within: int = 0) -> list[dict[str, Any]]:
        result = self.p.cli("due", "--within", str(within), "--json", as_=None, today=self.today)
        assert result.exit_code == 0, result.output
        return [r for r in json.loads(result.stdout) if r["case_id"] == self.id]


# -- form helpers ---------------------------------------------------------------------------


def uasc_forms(seed: int, age: int = 15) -> demo.Forms:
    return demo.Forms(random.Random(seed), seed, separation="unaccompanied", age=age)


def closure_review(c: Case, outcome: str = "propose_closure") -> dict[str, Any]:
    """A review finding every objective of the plan (O1, O2) achieved: progress is the
    review's, the approved plan stays as it was approved."""
    return c.f.review(c.cw, c.day, outcome)


def conference(c: Case) -> dict[str, Any]:
    return c.f.conference(c.sv, c.day)


def reach_closure_pending(c: Case, reason: str) -> dt.date:
    """From follow_up_review with a review proposing closure: propose closure (T19)."""
    c.wait(2)
    discussed = c.day
    c.move(
        "closure_pending", reason=reason, form_=("closure", c.f.closure(c.cw, discussed, reason))
    )
    return discussed


def authorise_and_archive(
    c: Case, reason: str, discussed: dt.date, *, early_refusals: bool
) -> None:
    """closure_pending -> post_closure_monitoring (T20) -> closed (T23), by the supervisor;
    with ``early_refusals`` also the notice (G25) and monitoring (G30) refusals."""
    c.wait(10)
    conference_id = c.record("case_conference", conference(c), as_=c.sv)
    closure = c.f.closure(c.cw, discussed, reason)
    closure["case_conference_id"] = conference_id
    c.record("closure", closure)
    if early_refusals:
        # D+10: the notice period (closure_notice_days, 30) is not over.
        refusal = c.refuse_move(
            ["G25"],
            "post_closure_monitoring",
            as_=c.sv,
            form_=("post_closure_monitoring", c.f.monitoring(c.day)),
        )
        assert failing_codes(refusal.stderr) == ["G25"]
    # The caseworker cannot authorise: not an authoriser, and four eyes.
    c.refuse_move(
        ["GA", "G20"],
        "post_closure_monitoring",
        as_=c.cw,
        form_=("post_closure_monitoring", c.f.monitoring(c.day)),
    )
    c.day = discussed + dt.timedelta(days=31)
    closed_on = c.day
    c.move(
        "post_closure_monitoring",
        as_=c.sv,
        form_=("post_closure_monitoring", c.f.monitoring(closed_on)),
    )
    doc = c.show()
    assert doc["closure"]["authorised_by"] == c.sv
    assert doc["closure"]["closure_date"] == closed_on.isoformat()
    assert doc["closure"]["closure_reason"] == reason
    assert doc["closed_on"] == closed_on.isoformat() and doc["closure_reason"] == reason
    for _ in range(3):
        c.wait(28)
        c.record("follow_up", c.f.follow_up(c.cw, c.day, phase="post_closure"))
    final = ("post_closure_monitoring", c.f.monitoring(closed_on, outcome="no_concerns"))
    if early_refusals:
        c.day = demo._add_months(closed_on, 2)
        c.refuse_move(["G30"], "closed", as_=c.sv, form_=final)
    c.day = demo._add_months(closed_on, 3) + dt.timedelta(days=1)
    c.move("closed", as_=c.sv, form_=final)
    assert c.show()["post_closure_monitoring"]["monitoring_outcome"] == "no_concerns"


# -- the end of every scenario -------------------------------------------------------------


def assert_history(c: Case, path: list[str]) -> None:
    """`cmgit log --json` reproduces the path, and so does the state history; nothing
    personal in any commit message."""
    result = c.p.cli("log", c.id, "--json", as_=None, today=c.today)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows[0]["action"] == "new" and rows[0]["to"] == "identified"
    walked = ["identified"]
    for row in rows:
        if row["action"] != "move":
            continue
        assert row["from"] == walked[-1], rows
        assert row["transition"] in EDGES[(row["from"], row["to"])]
        walked.append(row["to"])
    assert walked == path
    assert walked[-1] == c.state() == c.listed()["state"]
    # The state history in the open fields mirrors the commits of the moves (domain TS).
    assert c.listed()["state_history"] == [
        f"{row['date']} {row['to']}" for row in rows if row["action"] in ("new", "move")
    ]
    commits = c.p.git("rev-list", "HEAD", "--", ids.record_path(c.id)).split()
    assert len(rows) == len(commits)
    assert [r["version"] for r in rows] == list(range(1, len(rows) + 1))
    messages = c.p.git("log", "--format=%B")
    assert CANARY not in messages
    assert CANARY not in c.p.git("log", "--format=%an %ae %cn %ce")


# -- TS01 ---------------------------------------------------------------------------------


def test_ts01_uasc_at_border_reunified_and_reintegrated(programme: Programme) -> None:
    c = Case(programme, uasc_forms(101), dt.date(2025, 5, 5))
    ident = c.f.identification(c.cw, c.day)
    ident.update(
        identification_context="transit_or_border",
        identification_source="immigration_actor",
        urgent_needs=True,
    )
    c.new(ident)

    # urgent-referral event before registration (consent pending): accepted.
    urgent = c.f.referral(c.cw, c.day, "medical_health")
    urgent.update(urgency="urgent")
    del urgent["consent_ref"]
    c.record("referral", urgent)

    # Consent: the child's assent and the guardian's consent.
    c.wait(1)
    c.record("consent", c.f.consent(c.cw, "child", c.day))
    guardian = c.record("consent", c.f.consent(c.cw, "legal_guardian", c.day))
    registration = c.f.registration(c.cw, c.day, ["unaccompanied_or_separated"])
    registration["child"]["sex"] = "male"
    c.move("registered", form_=("registration", registration))
    assert c.show()["separation_status"] == "unaccompanied"

    # Immediate risk: medical care, supervisor informed.
    c.record("risk_assessment", c.f.risk_assessment(c.cw, c.day, "high", immediate=True))
    action = c.f.immediate_action(c.cw, c.day, done=False)
    action["action_type"] = "medical_care"
    action_id = c.record("immediate_action", action)
    c.move("immediate_action")
    assert c.show()["risk_level"] == "high"

    # Illegal: straight from immediate_action to case_planning.
    refusal = c.refuse_move([], "case_planning")
    assert "illegal transition" in refusal.stderr

    # Stabilised: the action is completed with its outcome (T06).
    c.wait(2)
    done = c.f.immediate_action(c.cw, c.day - dt.timedelta(days=2), done=True)
    done.update(action_id=action_id, action_type="medical_care", completed_on=c.today)
    c.record("immediate_action", done)
    c.move("assessment")
    assert c.show()["comprehensive_assessment_required"] is True

    # Assessment: risk now medium; FTR in progress; referred to the CP authority
    # (guardian appointed: the guardian's consent is on file).
    c.record("risk_assessment", c.f.risk_assessment(c.cw, c.day, "medium"))
    c.record("ftr", c.f.ftr(c.day))
    referral = c.f.referral(c.cw, c.day, "child_protection_authority")
    referral["consent_ref"] = guardian
    c.record("referral", referral)
    c.wait(3)
    c.record("assessment", c.f.assessment(c.cw, c.day - dt.timedelta(days=3), c.day))
    # G09 path: after immediate action only a comprehensive assessment opens planning.
    c.refuse_move(["G09", "G11"], "case_planning")
    c.wait(2)
    c.record(
        "assessment",
        c.f.assessment(c.cw, c.day - dt.timedelta(days=2), c.day, phase="comprehensive"),
    )
    # Before the BIA is recorded: G11 alone.
    c.refuse_move(["G11"], "case_planning", absent=("G09",))
    c.record("bia", c.f.bia(c.cw, c.day))
    c.move("case_planning")
    assert c.show()["comprehensive_assessment_required"] is False

    # The plan: family reunification, which rests on a BID.
    c.wait(3)
    plan = c.f.case_plan(c.cw, c.day)
    plan["actions"][0].update(
        intervention_type="family_reunification", description=c.f.note("reunify with the mother")
    )
    c.record("case_plan", plan)
    c.refuse_move(["G18"], "implementation", as_=c.sv)
    bid = form("bid")["bid"]
    bid.update(
        bid_manager_id=c.sv,
        panel_date=c.today,
        decision="family_reunification",
        child_agrees=True,
        appeal={"status": "none"},
    )
    c.record("bid", bid, as_=c.sv)
    c.wait(1)
    c.move("implementation", as_=c.sv)
    current = c.show()["case_plan"][-1]
    assert current["status"] == "active"
    assert current["signed_by_supervisor"]["staff_id"] == c.sv
    assert current["signed_by_caseworker"]["staff_id"] == c.cw

    # Implementation: family found, family assessed, reunified.
    ftr = form("ftr")["ftr"]
    ftr.update(
        status="family_found",
        initiated_on=(c.day - dt.timedelta(days=12)).isoformat(),
        family_found_on=c.today,
    )
    c.record("ftr", ftr)
    c.wait(14)
    c.record("follow_up", c.f.follow_up(c.cw, c.day))
    ftr.update(status="reunified", family_assessment_done=True)
    c.record("ftr", ftr)
    c.wait(14)
    c.record("follow_up", c.f.follow_up(c.cw, c.day))
    assert c.show()["ftr"]["status"] == "reunified"

    # Review: objectives achieved, risk low.
    c.record("risk_assessment", c.f.risk_assessment(c.cw, c.day, "low"))
    c.record("review", closure_review(c))
    c.move("follow_up_review")
    assert c.show()["risk_level"] == "low"

    discussed = reach_closure_pending(c, "reintegrated")
    authorise_and_archive(c, "reintegrated", discussed, early_refusals=True)
    assert_history(
        c,
        [
            "identified",
            "registered",
            "immediate_action",
            "assessment",
            "case_planning",
            "implementation",
            "follow_up_review",
            "closure_pending",
            "post_closure_monitoring",
            "closed",
        ],
    )


# -- TS02 ---------------------------------------------------------------------------------


def test_ts02_no_consent_no_registration(programme: Programme) -> None:
    forms = demo.Forms(random.Random(102), 102, separation="with_primary_caregiver", age=13)
    c = Case(programme, forms, dt.date(2026, 2, 2))
    # The fixture identification carries personal fields (referrer contact, old reference).
    ident = form("identification")["identification"]
    ident.update(
        identified_on=c.today, identified_by=c.cw, identification_source="community_member"
    )
    c.new(ident)
    c.wait(1)
    c.record("consent", c.f.consent(c.cw, "child", c.day))
    c.record("consent", c.f.consent(c.cw, "parent", c.day, decision="declined"))

    registration = c.f.registration(c.cw, c.day, ["abuse_neglect_or_exploitation"])
    registration["child"]["sex"] = "female"
    refusal = c.refuse_move(["G02"], "registered", form_=("registration", registration))
    assert failing_codes(refusal.stderr) == ["G02"]

    # Closing without registration is an authorisation: not the caseworker's.
    c.refuse_move(["GA", "G20"], "closed", reason="consent_declined")
    c.wait(1)
    c.move("closed", reason="consent_declined", as_=c.sv)

    # G21: nothing personal is left (P fields purged), the rest stays.
    doc = c.show()
    assert "referrer_contact" not in doc["identification"]
    assert "previous_case_reference" not in doc["identification"]
    assert doc["identification"]["initial_concern_summary"] == ident["initial_concern_summary"]
    assert all("given_by_name" not in item for item in doc["consent"])
    assert "registration" not in doc
    shown = json.dumps(doc)
    for marker in ("CANARY-CONTACT", "CANARY-PREVREF", "ADULT"):
        assert marker not in shown
    assert doc["closure"]["closure_reason"] == "consent_declined"
    assert doc["closure"]["authorised_by"] == c.sv

    # Reading: ST05 is a statistics table the site builds; its source here is the open
    # field closure_reason that `cmgit list` shows without a key.
    row = c.listed("--state", "closed")
    assert row["closure_reason"] == "consent_declined" and row["closed_on"] == c.today
    assert row["registered_on"] is None
    assert_history(c, ["identified", "closed"])


# -- TS04 ---------------------------------------------------------------------------------


def test_ts04_no_protection_concern(programme: Programme) -> None:
    journey = programme.journey(days_before=60, seed=104, separation="with_primary_caregiver")
    journey.identify()
    journey.register()
    c = Case.from_journey(programme, journey)
    assert c.state() == "registered"

    c.wait(2)
    c.move("assessment")
    c.wait(4)
    c.record(
        "assessment",
        c.f.assessment(
            c.cw, c.day - dt.timedelta(days=4), c.day, outcome="no_further_action", level="low"
        ),
    )
    assert "needs" not in c.show()["assessment"][-1]
    c.refuse_move(["G08"], "case_planning")

    c.refuse_move(["GA", "G20"], "closed", reason="no_protection_concern")
    c.wait(1)
    c.move("closed", reason="no_protection_concern", as_=c.sv)
    row = c.listed()
    assert row["closure_reason"] == "no_protection_concern" and row["closed_on"] == c.today
    assert row["next_follow_up_due"] is None

    # GD: a closed case is read-only.
    c.wait(3)
    refusal = c.refuse_record([], "follow_up", c.f.follow_up(c.cw, c.day))
    assert "GD" in refusal.stderr
    refusal = c.refuse_record([], "note", form("note")["note"], as_=c.sv)
    assert "GD" in refusal.stderr
    assert_history(c, ["identified", "registered", "assessment", "closed"])


# -- TS05 ---------------------------------------------------------------------------------


def test_ts05_incomplete_case_plan(programme: Programme) -> None:
    journey = programme.journey(days_before=60, seed=105, separation="with_primary_caregiver")
    demo.walk(journey, "assessment")
    c = Case.from_journey(programme, journey)
    c.wait(3)
    c.move("case_planning")

    plan = c.f.case_plan(c.cw, c.day)
    second = plan["actions"][1]
    second.update(start_date=c.today)
    for key in ("responsible_party", "end_date", "timeframe_horizon"):
        second.pop(key, None)
    # Reading: the schema requires participation.child_participated (leaving it out is a
    # GB refusal, exit 3); "missing" participation is child_participated: false with no
    # reason why, which is G15's business.
    plan["participation"] = {
        "child_participated": False,
        "child_views": c.f.note("not asked yet"),
        "caregiver_participated": True,
    }
    plan_id = c.record("case_plan", plan)
    c.wait(1)
    c.refuse_move(["G14", "G15"], "implementation", as_=c.sv)

    fixed = copy.deepcopy(plan)
    fixed["plan_id"] = plan_id
    fixed["actions"][1].update(
        responsible_party="PRV-01", end_date=(c.day + dt.timedelta(days=60)).isoformat()
    )
    c.record("case_plan", fixed)
    refusal = c.refuse_move(["G15"], "implementation", as_=c.sv, absent=("G14",))
    assert failing_codes(refusal.stderr) == ["G15"]

    fixed["participation"]["child_participated"] = True
    c.record("case_plan", fixed)
    assert c.show()["case_plan"][-1]["plan_id"] == plan_id
    c.move("implementation", as_=c.sv)
    assert c.show()["case_plan"][-1]["status"] == "active"
    assert_history(c, ["identified", "registered", "assessment", "case_planning", "implementation"])


# -- TS06 ---------------------------------------------------------------------------------


def test_ts06_four_eyes_on_plan_approval(programme: Programme) -> None:
    journey = programme.journey(days_before=60, seed=106, separation="with_primary_caregiver")
    demo.walk(journey, "case_planning")
    c = Case.from_journey(programme, journey)
    c.wait(2)
    plan = c.show()["case_plan"][-1]
    assert plan["signed_by_caseworker"]["staff_id"] == c.cw

    # CW1 approves their own plan (signs as supervisor): not an authoriser, and G16.
    c.refuse_move(["GA", "G16"], "implementation", as_=c.cw)
    # CW1 writes their own id as the supervisor's signature; SV1 approving is refused.
    self_signed = {**plan, "signed_by_supervisor": {"staff_id": c.cw, "date": c.today}}
    c.record("case_plan", self_signed)
    refusal = c.refuse_move(["G16"], "implementation", as_=c.sv)
    assert failing_codes(refusal.stderr) == ["G16"]
    # A supervisor of another team cannot even open the case (not a recipient: exit 5).
    c.refuse_move([], "implementation", as_="sv-south", exit_code=5)
    # Coordinators type forms but do not authorise.
    c.refuse_move(["GA"], "implementation", as_="co-north")

    unsigned = {k: v for k, v in plan.items() if k != "signed_by_supervisor"}
    c.record("case_plan", unsigned)
    c.move("implementation", as_=c.sv)
    approved = c.show()["case_plan"][-1]
    assert approved["signed_by_supervisor"]["staff_id"] == c.sv
    assert approved["signed_by_caseworker"]["staff_id"] == c.cw
    assert approved["status"] == "active"
    log = json.loads(c.p.cli("log", c.id, "--json", as_=None).stdout)
    assert (log[-1]["actor"], log[-1]["role"], log[-1]["transition"]) == (c.sv, "supervisor", "T09")
    assert_history(c, ["identified", "registered", "assessment", "case_planning", "implementation"])


# -- TS08 ---------------------------------------------------------------------------------


def test_ts08_planned_closure_without_due_process(programme: Programme) -> None:
    journey = programme.journey(days_before=120, seed=108, separation="with_primary_caregiver")
    demo.walk(journey, "follow_up_review")
    c = Case.from_journey(programme, journey)
    review = c.show()["review"][-1]
    assert review["outcome"] == "propose_closure"

    c.wait(2)
    undiscussed = c.f.closure(c.cw, c.day, "objectives_met")
    del undiscussed["discussion_with_child_family_on"]
    refusal = c.refuse_move(
        ["G23"], "closure_pending", reason="objectives_met", form_=("closure", undiscussed)
    )
    assert failing_codes(refusal.stderr) == ["G23"]
    # A discussion dated in the future does not count either.
    future = c.f.closure(c.cw, c.day + dt.timedelta(days=3), "objectives_met")
    c.refuse_move(["G23"], "closure_pending", reason="objectives_met", form_=("closure", future))

    discussed = reach_closure_pending(c, "objectives_met")
    c.day = discussed + dt.timedelta(days=35)
    monitoring = ("post_closure_monitoring", c.f.monitoring(c.day))
    refusal = c.refuse_move(["G26"], "post_closure_monitoring", as_=c.sv, form_=monitoring)
    assert failing_codes(refusal.stderr) == ["G26"]

    conference_id = c.record("case_conference", conference(c), as_=c.sv)
    disagreed = c.f.closure(c.cw, discussed, "objectives_met")
    disagreed.update(case_conference_id=conference_id, family_agreement="disagreed")
    c.record("closure", disagreed)
    refusal = c.refuse_move(["G27"], "post_closure_monitoring", as_=c.sv, form_=monitoring)
    assert failing_codes(refusal.stderr) == ["G27"]
    c.refuse_move(["GA", "G20"], "post_closure_monitoring", as_=c.cw, form_=monitoring)

    # cancel-closure (T21): back to follow_up_review; the closure form is dropped.
    c.refuse_move([], "follow_up_review", exit_code=2)  # T21 needs a reason
    c.move("follow_up_review", reason="child_family_disagree")
    doc = c.show()
    assert "closure" not in doc and doc["closure_reason"] is None
    assert_history(
        c,
        [
            "identified",
            "registered",
            "assessment",
            "case_planning",
            "implementation",
            "follow_up_review",
            "closure_pending",
            "follow_up_review",
        ],
    )


# -- TS10 ---------------------------------------------------------------------------------


def test_ts10_death_of_a_child(programme: Programme) -> None:
    journey = programme.journey(days_before=90, seed=110, separation="with_primary_caregiver")
    demo.walk(journey, "implementation")
    c = Case.from_journey(programme, journey)
    c.wait(5)

    closure_schema = json.loads(
        (programme.root / "schemas" / "forms" / "closure.schema.json").read_text()
    )
    assert closure_schema["additionalProperties"] is False
    assert not [k for k in closure_schema["properties"] if "cause" in k]
    death = {
        "closure_reason": "death",
        "proposed_on": c.today,
        "proposed_by": c.sv,
        "date_of_death": (c.day - dt.timedelta(days=1)).isoformat(),
    }
    with_cause = {**death, "cause_of_death": "CANARY-CAUSE"}
    refusal = c.refuse_move(
        ["GB"], "closed", reason="death", as_=c.sv, form_=("closure", with_cause), exit_code=3
    )
    assert (
        "at /closure: unknown field cause_of_death: the nearest the form has is date_of_death"
        in refusal.stderr
    )
    refusal = c.refuse_record(["cause_of_death"], "closure", with_cause, exit_code=3)

    c.refuse_move(["GA", "G20"], "closed", reason="death", form_=("closure", death))
    # No agreement, notice, conference or monitoring is needed (T26).
    c.move("closed", reason="death", as_=c.sv, form_=("closure", death))
    doc = c.show()
    assert doc["closure"]["closure_reason"] == "death"
    assert doc["closure"]["authorised_by"] == c.sv
    assert doc["closure"]["post_closure_monitoring_required"] is False
    assert "child_agreement" not in doc["closure"] and "post_closure_monitoring" not in doc
    # Reading: ST06 (small numbers folded into "other") is a site statistic; the open
    # fields it is built from are checked here.
    row = c.listed()
    assert (row["state"], row["closure_reason"], row["closed_on"]) == ("closed", "death", c.today)
    assert_history(
        c, ["identified", "registered", "assessment", "case_planning", "implementation", "closed"]
    )


# -- TS14 ---------------------------------------------------------------------------------


def test_ts14_overdue_follow_up_by_risk_level(programme: Programme) -> None:
    journey = programme.journey(days_before=90, seed=114, separation="with_primary_caregiver")
    demo.walk(journey, "implementation")
    c = Case.from_journey(programme, journey)
    today = dt.date(2026, 4, 1)
    assert c.day < today - dt.timedelta(days=10)

    def follow_ups() -> list[dict[str, Any]]:
        return [r for r in c.due() if r["kind"] == "follow_up"]

    # High risk; the last successful follow-up was 9 days ago (interval for high: 7).
    last = today - dt.timedelta(days=9)
    c.day = last - dt.timedelta(days=1)
    c.record("risk_assessment", c.f.risk_assessment(c.cw, c.day, "high"))
    c.day = today
    c.record("follow_up", c.f.follow_up(c.cw, last))
    rows = follow_ups()
    assert len(rows) == 1
    assert rows[0]["due_on"] == (last + dt.timedelta(days=7)).isoformat()
    assert rows[0]["days_overdue"] == 2 and rows[0]["risk_level"] == "high"
    # Reading: "check overdue" is `cmgit list --overdue`; ST08 is a site statistic.
    assert c.listed("--overdue")["next_follow_up_due"] == rows[0]["due_on"]
    # With today 3 days earlier it is not overdue yet.
    early = c.p.cli(
        "due", "--within", "0", "--json", as_=None, today=(last + dt.timedelta(days=6)).isoformat()
    )
    assert c.id not in {r["case_id"] for r in json.loads(early.stdout) if r["kind"] == "follow_up"}

    # A follow-up today: gone from what is due.
    c.record("follow_up", c.f.follow_up(c.cw, today))
    assert follow_ups() == []
    assert c.listed()["next_follow_up_due"] == (today + dt.timedelta(days=7)).isoformat()

    # update-risk to low: next due = last contact + 30 days.
    c.record("risk_assessment", c.f.risk_assessment(c.cw, today, "low"))
    due_low = (today + dt.timedelta(days=30)).isoformat()
    row = c.listed()
    assert (row["risk_level"], row["next_follow_up_due"]) == ("low", due_low)

    # A failed contact attempt does not reset the clock.
    c.wait(20)
    c.record("follow_up", c.f.follow_up(c.cw, c.day, successful=False))
    assert c.listed()["next_follow_up_due"] == due_low
    c.day = today + dt.timedelta(days=31)
    rows = follow_ups()
    assert [(r["due_on"], r["days_overdue"], r["risk_level"]) for r in rows] == [
        (due_low, 1, "low")
    ]
    c.day = today + dt.timedelta(days=29)
    assert follow_ups() == []
    assert_history(c, ["identified", "registered", "assessment", "case_planning", "implementation"])


# -- TS15 ---------------------------------------------------------------------------------


def test_ts15_non_linear_return_after_review(programme: Programme) -> None:
    journey = programme.journey(days_before=120, seed=115, separation="with_primary_caregiver")
    demo.walk(journey, "implementation")
    c = Case.from_journey(programme, journey)

    c.wait(10)
    review = c.f.review(c.cw, c.day, "reassess")
    review["new_concerns"] = True
    c.record("review", review)
    c.move("follow_up_review")
    c.refuse_move(["G37"], "implementation")  # the review did not decide to continue
    c.move("assessment")
    c.wait(5)
    c.record(
        "assessment",
        c.f.assessment(c.cw, c.day - dt.timedelta(days=4), c.day, phase="reassessment"),
    )
    c.move("case_planning")
    c.wait(2)
    c.record("case_plan", c.f.case_plan(c.cw, c.day, version=2))
    plans = c.show()["case_plan"]
    assert [(p["version"], p["status"]) for p in plans] == [(1, "superseded"), (2, "draft")]
    c.wait(1)
    c.move("implementation", as_=c.sv)
    plans = c.show()["case_plan"]
    assert [(p["version"], p["status"]) for p in plans] == [(1, "superseded"), (2, "active")]

    # Propose closure from a review that decided to continue the plan: G22.
    c.wait(20)
    c.record("review", c.f.review(c.cw, c.day, "continue_plan"))
    c.move("follow_up_review")
    closure = ("closure", c.f.closure(c.cw, c.day, "objectives_met"))
    c.refuse_move(["G22"], "closure_pending", reason="objectives_met", form_=closure)
    # A review proposing closure while it finds an objective still in progress: G22.
    c.wait(1)
    review = c.f.review(c.cw, c.day, "propose_closure")
    review["objective_status"][0]["status"] = "in_progress"
    c.record("review", review)
    refusal = c.refuse_move(
        ["G22"],
        "closure_pending",
        reason="objectives_met",
        form_=("closure", c.f.closure(c.cw, c.day, "objectives_met")),
    )
    assert "G22: " in refusal.stderr
    assert "(objective O1 is in_progress in the latest review" in refusal.stderr
    c.wait(1)
    c.record("review", c.f.review(c.cw, c.day, "continue_plan"))
    c.move("implementation")
    assert_history(
        c,
        [
            "identified",
            "registered",
            "assessment",
            "case_planning",
            "implementation",
            "follow_up_review",
            "assessment",
            "case_planning",
            "implementation",
            "follow_up_review",
            "implementation",
        ],
    )


# -- TS18 ---------------------------------------------------------------------------------


def reintegration_plan(c: Case) -> dict[str, Any]:
    plan = c.f.case_plan(c.cw, c.day)
    plan["plan_type"] = "reintegration_plan"
    base = plan["actions"][0]
    later = (c.day + dt.timedelta(days=90)).isoformat()

    def action(
        number: int, objective: str, kind: str, dimension: str, how: str, who: str, what: str
    ) -> dict[str, Any]:
        return {
            **base,
            "action_id": f"A{number}",
            "objective_id": objective,
            "intervention_type": kind,
            "dimension": dimension,
            "direct_or_referral": how,
            "responsible_type": "agency" if how == "referral" else "caseworker",
            "responsible_party": who,
            "description": c.f.note(what),
            "start_date": c.today,
            "end_date": later,
        }

    plan["actions"] = [
        action(
            1,
            "O1",
            "vocational_training",
            "economic",
            "referral",
            "PRV-VT-01",
            "vocational training",
        ),
        action(2, "O2", "education", "social", "direct", c.cw, "school enrolment"),
        action(
            3,
            "O2",
            "birth_registration_documentation",
            "social",
            "direct",
            c.cw,
            "civil documentation",
        ),
        action(4, "O1", "mhpss_basic", "psychosocial", "direct", c.cw, "group MHPSS"),
    ]
    return plan


def test_ts18_returnee_in_family_reintegration_plan(programme: Programme) -> None:
    forms = demo.Forms(random.Random(118), 118, separation="with_primary_caregiver", age=16)
    c = Case(programme, forms, dt.date(2025, 6, 2))
    c.new(c.f.identification(c.cw, c.day))
    c.wait(1)
    # Child and parent consent to registration and services, not (yet) to sharing.
    only_services = ("registration_and_services", "data_collection_and_storage")
    c.record("consent", c.f.consent(c.cw, "child", c.day, scopes=only_services))
    c.record("consent", c.f.consent(c.cw, "parent", c.day, scopes=only_services))
    registration = c.f.registration(c.cw, c.day, ["other_protection_risk"])
    registration["child_categories"] = ["returnee"]
    registration["child"]["sex"] = "female"
    c.move("registered", form_=("registration", registration))

    c.wait(2)
    c.move("assessment")
    c.record("risk_assessment", c.f.risk_assessment(c.cw, c.day, "medium"))
    c.wait(4)
    c.record("assessment", c.f.assessment(c.cw, c.day - dt.timedelta(days=4), c.day))
    bia = c.f.bia(c.cw, c.day)
    bia["trigger"] = "risk_in_family"
    c.record("bia", bia)
    # Reading: the domain wants a warning-only BIA rule for children in families with
    # risk factors; the workflow data has G11 for separated children only, so planning
    # opens with no G11 at all.
    result = c.move("case_planning")
    assert "G11" not in result.stderr

    c.wait(3)
    plan = reintegration_plan(c)
    c.record("case_plan", plan)
    # Referral to vocational training without consent to share information: refused.
    referral = c.f.referral(c.cw, c.day, "vocational_training")
    referral.update(provider_id="PRV-VT-01", plan_action_id="A1")
    c.refuse_record(["G19r"], "referral", referral)
    c.refuse_move(["G19"], "implementation", as_=c.sv)
    c.wait(1)
    sharing = c.record(
        "consent", c.f.consent(c.cw, "parent", c.day, scopes=("information_sharing_referral",))
    )
    c.record("consent", c.f.consent(c.cw, "child", c.day, scopes=("information_sharing_referral",)))
    referral["consent_ref"] = sharing
    c.record("referral", referral)
    c.move("implementation", as_=c.sv)
    assert c.show()["case_plan"][-1]["plan_type"] == "reintegration_plan"

    for _ in range(3):
        c.wait(14)
        c.record("follow_up", c.f.follow_up(c.cw, c.day))
    c.record("review", closure_review(c))
    c.move("follow_up_review")
    discussed = reach_closure_pending(c, "reintegrated")
    authorise_and_archive(c, "reintegrated", discussed, early_refusals=False)
    # Reading: ST10 counts "children in families" from the open separation_status.
    row = c.listed()
    assert row["separation_status"] == "with_primary_caregiver"
    assert row["closure_reason"] == "reintegrated"
    assert_history(
        c,
        [
            "identified",
            "registered",
            "assessment",
            "case_planning",
            "implementation",
            "follow_up_review",
            "closure_pending",
            "post_closure_monitoring",
            "closed",
        ],
    )


# -- TS22 ---------------------------------------------------------------------------------

MDRTS7 = WORKFLOW["display_profiles"]["mdrts7"]["labels"]


def test_ts22_seven_step_trafficking_case(programme: Programme) -> None:
    forms = demo.Forms(random.Random(122), 122, separation="accompanied_at_risk", age=16)
    c = Case(programme, forms, dt.date(2025, 7, 1))

    def step(label: str) -> None:
        state = c.state()
        row = c.listed("--profile", "mdrts7")
        assert row["step"] == label == MDRTS7[state]
        assert row["state"] == state  # stored states stay canonical
        text = (programme.root / ids.record_path(c.id)).read_text()
        assert f"\nstate: {state}\n" in text
        default = c.listed()
        assert default["state"] == state and default["step"] != label

    ident = c.f.identification(c.cw, c.day)
    ident["identification_source"] = "release_from_exploitation"
    c.new(ident)
    step("1 Initial contact")
    c.wait(1)
    c.record("consent", c.f.consent(c.cw, "child", c.day))
    c.record("consent", c.f.consent(c.cw, "parent", c.day))
    registration = c.f.registration(c.cw, c.day, ["trafficked_or_at_risk"])
    registration["child_categories"] = ["trafficked"]
    registration["child"]["sex"] = "female"
    c.move("registered", form_=("registration", registration))
    step("1 Initial contact")

    c.wait(2)
    c.move("assessment")
    step("2 Assessment")
    c.record("risk_assessment", c.f.risk_assessment(c.cw, c.day, "medium"))
    c.wait(5)
    c.record("assessment", c.f.assessment(c.cw, c.day - dt.timedelta(days=5), c.day))
    c.move("case_planning")
    step("3 Planning")
    c.wait(3)
    plan = c.f.case_plan(c.cw, c.day)
    c.record("case_plan", plan)
    c.move("implementation", as_=c.sv)
    step("4 Implementation")

    # Evaluation: services partly effective, revise the plan.
    c.wait(30)
    c.record("follow_up", c.f.follow_up(c.cw, c.day))
    review = c.f.review(c.cw, c.day, "revise_plan")
    assert review["services_effective"] == "partly"
    c.record("review", review)
    c.move("follow_up_review")
    step("5 Evaluation")
    c.move("case_planning")
    step("3 Planning")
    c.wait(2)
    plan2 = c.f.case_plan(c.cw, c.day, version=2)
    c.record("case_plan", plan2)
    c.move("implementation", as_=c.sv)
    step("4 Implementation")
    c.wait(30)
    c.record("follow_up", c.f.follow_up(c.cw, c.day))
    c.record("review", closure_review(c))
    c.move("follow_up_review")
    step("5 Evaluation")
    reach_closure_pending(c, "objectives_met")
    step("7 Closing the case (pending)")

    log = c.p.cli("log", c.id, "--profile", "mdrts7", "--json", as_=None)
    moves = [r for r in json.loads(log.stdout) if r["action"] == "move"]
    assert [r["to_step"] for r in moves] == [MDRTS7[r["to"]] for r in moves]
    assert moves[-1]["to"] == "closure_pending"
    assert_history(
        c,
        [
            "identified",
            "registered",
            "assessment",
            "case_planning",
            "implementation",
            "follow_up_review",
            "case_planning",
            "implementation",
            "follow_up_review",
            "closure_pending",
        ],
    )


# -- TS24 ---------------------------------------------------------------------------------


def test_ts24_schema_and_enum_validation(programme: Programme) -> None:
    forms = demo.Forms(random.Random(124), 124, separation="with_primary_caregiver", age=9)
    c = Case(programme, forms, dt.date(2026, 3, 2))
    c.new(c.f.identification(c.cw, c.day))
    c.wait(1)

    registration = c.f.registration(c.cw, c.day, ["abuse_neglect_or_exploitation"])
    missing = {k: v for k, v in registration.items() if k != "separation_status"}
    refusal = c.refuse_move(["GB"], "registered", form_=("registration", missing), exit_code=3)
    assert "/registration" in refusal.stderr and "separation_status" in refusal.stderr
    refusal = c.refuse_record(["separation_status"], "registration", missing, exit_code=3)
    assert "at /registration: missing: separation_status" in refusal.stderr
    religion = {**registration, "religion": "CANARY-RELIGION"}
    refusal = c.refuse_record(
        ["unknown field religion: no such field here"], "registration", religion, exit_code=3
    )
    refusal = c.refuse_move(
        ["GB", "religion"], "registered", form_=("registration", religion), exit_code=3
    )

    # urgent-referral on an identified case, consent pending: accepted as an event...
    urgent = c.f.referral(c.cw, c.day, "medical_health")
    urgent["urgency"] = "urgent"
    del urgent["consent_ref"]
    c.record("referral", urgent)
    # ...but registering is still refused until consent (G02).
    refusal = c.refuse_move(["G02"], "registered", form_=("registration", registration))
    assert failing_codes(refusal.stderr) == ["G02"]
    # A routine referral needs consent to share (G19r).
    c.refuse_record(["G19r"], "referral", c.f.referral(c.cw, c.day, "education"))

    c.record("consent", c.f.consent(c.cw, "child", c.day))
    c.record("consent", c.f.consent(c.cw, "caregiver", c.day))
    c.wait(1)
    registration["registered_on"] = c.today
    c.move("registered", form_=("registration", registration))
    assert c.show()["registered_on"] == c.today

    very_high = c.f.risk_assessment(c.cw, c.day, "high")
    very_high["risk_level"] = "very_high"
    refusal = c.refuse_record(
        ["/risk_assessment", "risk_level"], "risk_assessment", very_high, exit_code=3
    )
    assert "at /risk_assessment/0/risk_level: expected one of: low, medium, high" in refusal.stderr

    # Date order: a follow-up dated before registration (G41), or in the future.
    c.wait(3)
    early = c.f.follow_up(c.cw, c.day - dt.timedelta(days=5))
    c.refuse_record(["G41"], "follow_up", early)
    c.refuse_record(["G41"], "follow_up", c.f.follow_up(c.cw, c.day + dt.timedelta(days=1)))
    c.record("follow_up", c.f.follow_up(c.cw, c.day))
    assert_history(c, ["identified", "registered"])


def test_ts24_record_schema_refusal_names_gb(programme: Programme) -> None:
    forms = demo.Forms(random.Random(125), 125, separation="with_primary_caregiver", age=9)
    c = Case(programme, forms, dt.date(2026, 3, 2))
    c.new(c.f.identification(c.cw, c.day))
    registration = c.f.registration(c.cw, c.day, ["abuse_neglect_or_exploitation"])
    del registration["separation_status"]
    refusal = c.refuse_record(["separation_status"], "registration", registration, exit_code=3)
    assert "GB" in refusal.stderr


# -- Monitoring concerns, closure at 18, approved plans --------------------------------------


def post_closure_visit(c: Case, **changes: Any) -> dict[str, Any]:
    return {**c.f.follow_up(c.cw, c.day, phase="post_closure"), **changes}


def test_a_monitoring_concern_stops_archiving_as_no_concerns(programme: Programme) -> None:
    journey = programme.journey(days_before=300, seed=131, separation="with_primary_caregiver")
    demo.walk(journey, "post_closure_monitoring")
    c = Case.from_journey(programme, journey)
    started = dt.date.fromisoformat(c.show()["post_closure_monitoring"]["started_on"])
    c.wait(28)
    c.record("follow_up", post_closure_visit(c))
    c.wait(28)
    concern = c.record("follow_up", post_closure_visit(c, new_concern=True, escalated_to=c.sv))
    # Seen again, the living situation still gives concern: the concern stays open.
    c.wait(28)
    c.record(
        "follow_up",
        post_closure_visit(c, observations={"living_situation": {"status": "concern"}}),
    )
    c.day = demo._add_months(started, 3) + dt.timedelta(days=1)
    final = ("post_closure_monitoring", c.f.monitoring(started, outcome="no_concerns"))
    refusal = c.refuse_move(["G30"], "closed", as_=c.sv, form_=final)
    assert failing_codes(refusal.stderr) == ["G30"]
    assert (
        f"(follow-up {concern} recorded a new concern after closure and no later visit "
        "that saw the child found none)"
    ) in refusal.stderr
    # A visit that sees the child with no concern closes it; then the case is archived.
    c.record("follow_up", post_closure_visit(c))
    c.move("closed", as_=c.sv, form_=final)
    assert c.show()["post_closure_monitoring"]["monitoring_outcome"] == "no_concerns"


def test_closure_at_18_is_judged_on_the_day_of_the_move(programme: Programme) -> None:
    journey = programme.journey(
        days_before=120, seed=132, separation="with_primary_caregiver", age=17
    )
    demo.walk(journey, "assessment")
    c = Case.from_journey(programme, journey)
    born = dt.date.fromisoformat(c.show()["registration"]["child"]["date_of_birth"])
    birthday = born.replace(year=born.year + 18)
    assert birthday - dt.timedelta(days=31) > c.day

    # The discussion comes ahead: a proposal from the notice period (30 days) before.
    c.day = birthday - dt.timedelta(days=31)
    discussed = c.day - dt.timedelta(days=10)
    proposal = ("closure", c.f.closure(c.cw, discussed, "turned_18"))
    refusal = c.refuse_move(["G24p"], "closure_pending", reason="turned_18", form_=proposal)
    assert (
        "(the young person is not yet 18 within the notice period (30 days) from today)"
    ) in refusal.stderr
    c.wait(1)
    c.move("closure_pending", reason="turned_18", form_=proposal)

    # The day before the birthday, a closure date typed after it does not make them 18.
    c.day = birthday - dt.timedelta(days=1)
    typed = {
        **c.f.closure(c.cw, discussed, "turned_18"),
        "closure_date": (birthday + dt.timedelta(days=5)).isoformat(),
    }
    refusal = c.refuse_move(
        ["G24"], "closed", reason="turned_18", as_=c.sv, form_=("closure", typed)
    )
    assert failing_codes(refusal.stderr) == ["G24"]
    assert "(the young person is not yet 18 today)" in refusal.stderr
    c.wait(1)
    c.move("closed", reason="turned_18", as_=c.sv)
    assert c.show()["closed_on"] == birthday.isoformat()
    assert_history(c, ["identified", "registered", "assessment", "closure_pending", "closed"])


def test_notice_and_monitoring_are_counted_from_the_day_of_closure(
    programme: Programme,
) -> None:
    """G25 and G29 (version 2) count from the day of the move that closes the case: a
    closure_date typed ahead does not end the notice period, and one typed back does not
    shorten monitoring."""
    journey = programme.journey(days_before=300, seed=134, separation="with_primary_caregiver")
    demo.walk(journey, "follow_up_review")
    c = Case.from_journey(programme, journey)
    discussed = reach_closure_pending(c, "objectives_met")
    c.wait(10)
    closure = c.f.closure(c.cw, discussed, "objectives_met")
    closure["case_conference_id"] = c.record("case_conference", conference(c), as_=c.sv)
    closure["closure_date"] = (discussed + dt.timedelta(days=40)).isoformat()
    c.record("closure", closure)
    monitoring = ("post_closure_monitoring", c.f.monitoring(c.day))
    refusal = c.refuse_move(["G25"], "post_closure_monitoring", as_=c.sv, form_=monitoring)
    assert failing_codes(refusal.stderr) == ["G25"]
    assert "the move comes 10 days after the closure discussion" in refusal.stderr

    # Past the notice: monitoring planned from a back-dated closure_date is too short.
    c.day = discussed + dt.timedelta(days=31)
    closure["closure_date"] = (c.day - dt.timedelta(days=20)).isoformat()
    c.record("closure", closure)
    short = ("post_closure_monitoring", c.f.monitoring(c.day - dt.timedelta(days=20)))
    refusal = c.refuse_move(["G29"], "post_closure_monitoring", as_=c.sv, form_=short)
    assert failing_codes(refusal.stderr) == ["G29"]
    assert "at least 3 months from today" in refusal.stderr
    planned = ("post_closure_monitoring", c.f.monitoring(c.day))
    c.move("post_closure_monitoring", as_=c.sv, form_=planned)
    assert c.show()["state"] == "post_closure_monitoring"


def test_an_approved_plan_stays_as_approved(programme: Programme) -> None:
    journey = programme.journey(days_before=120, seed=133, separation="with_primary_caregiver")
    demo.walk(journey, "implementation")
    c = Case.from_journey(programme, journey)
    approved = c.show()["case_plan"][-1]
    assert approved["status"] == "active"

    # The caseworker re-records the approved plan with its objectives achieved: refused,
    # the supervisor's signature does not cover changed content.
    changed = copy.deepcopy(approved)
    for item in (*changed["objectives"], *changed["actions"]):
        item["status"] = "achieved"
    refusal = c.refuse_record(["G16a"], "case_plan", changed)
    assert (
        f"(the approved plan {approved['plan_id']} would change its objectives, actions, "
        "signatures or status"
    ) in refusal.stderr
    # Nor may a new plan arrive approved.
    forged = {k: v for k, v in changed.items() if k != "plan_id"}
    refusal = c.refuse_record(["G16a"], "case_plan", forged)
    assert "(a plan becomes active only when a supervisor approves it" in refusal.stderr

    # Progress is the review's: one objective still in progress stops closure, by its id.
    c.wait(14)
    c.record("follow_up", c.f.follow_up(c.cw, c.day))
    review = closure_review(c)
    review["objective_status"][1]["status"] = "in_progress"
    c.record("review", review)
    c.move("follow_up_review")
    c.wait(2)
    proposal = ("closure", c.f.closure(c.cw, c.day, "objectives_met"))
    refusal = c.refuse_move(["G22"], "closure_pending", reason="objectives_met", form_=proposal)
    assert (
        "(objective O2 is in_progress in the latest review; it must be achieved, "
        "or dropped with a reason in the approved plan"
    ) in refusal.stderr
    c.record("review", closure_review(c))
    c.move("closure_pending", reason="objectives_met", form_=proposal)
    doc = c.show()
    assert doc["case_plan"] == [approved]
    assert [a["status"] for a in doc["review"][-1]["action_status"]] == ["achieved"] * 2
