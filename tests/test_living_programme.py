"""The living programme, accepted end to end: changes of the procedure (SOP pages, forms,
the workflow) made in the work tree and committed with `cmgit config commit` by a role
that may make them pass `cmgit audit` and the central repository's hook and reach the
site; changes that break a rule are refused with it and leave the repository as it was,
and the same changes committed with plain git fail audit; a guard added to the workflow
judges the transitions made after it, never those made before.

Real repositories, real age keys, real SSH signatures, a real bare central repository
with the server hook. The programme (cases walked through the workflow, signatures
required) is built once for the module; each test works on its own copy."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import Result

from cmgit import ids
from cmgit.site import markup

from .conftest import CANARY, Programme
from .test_audit import audit, rules
from .test_config_commit import FORM, add_form_field, central, edit, signing_key
from .test_hooks import run_git
from .test_signing import require_signatures

PAGE = "site/sop/step-2-assessment.md"
WORKFLOW = "schemas/workflow.yaml"
TYPO, FIXED = "The assesment starts", "The assessment starts"
# A guard the audit can judge without a key: it reads an open field only.
GUARD = "G10"
GUARD_SUMMARY = "The risk level is set."  # what audit names
GUARD_REFUSAL = "No risk level is recorded"  # what the command says is missing
T03 = "to: assessment, by: case_workers, summary:"
REMOVED_STATE = "immediate_action"


@dataclass
class Living:
    """A copy of the module's programme: the repository, its staff's age keys and the
    SSH signing keys of the staff who sign."""

    programme: Programme
    ssh: Path
    cases: dict[str, str]  # role in the tests: case ID

    def env(self, staff_id: str) -> dict[str, str]:
        return {"CMGIT_SIGNING_KEY": str(self.ssh / SIGNING_KEYS[staff_id])}

    def cli(self, *args: str, as_: str) -> Result:
        """A command run by ``as_``, signed with their key."""
        return self.programme.cli(*args, as_=as_, env=self.env(as_))

    def config_commit(self, reason: str, as_: str) -> Result:
        return self.cli("config", "commit", "-m", reason, as_=as_)


# The SSH signing key file of each staff member who signs, in the programme's ssh folder.
SIGNING_KEYS = {"pm-001": "pm", "cw-north-1": "cw", "co-north": "co-north"}


@pytest.fixture(scope="module")
def living_template(
    programme_template: Programme, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Living]:
    base = tmp_path_factory.mktemp("living")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(base))
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        shutil.copytree(programme_template.root.parent, base / "prog", symlinks=True)
        programme = Programme(
            base / "prog" / "cases", base / "prog" / "keys", base / "prog" / "work"
        )
        # Cases walked through the real transitions before signatures are required.
        cases = {
            "held": programme.walk(REMOVED_STATE, seed=11),
            "first": programme.walk("registered", seed=12),
            "second": programme.walk("registered", seed=13),
        }
        ssh = base / "prog" / "ssh"
        ssh.mkdir()
        pm_key, _ = require_signatures(programme, ssh)
        signing_key(programme, ssh, "co-north", pm_key)
        assert programme.git("status", "--porcelain") == ""
        yield Living(programme, ssh, cases)


@pytest.fixture
def living(living_template: Living, tmp_path: Path) -> Living:
    """A fresh copy of the module's programme for one test."""
    shutil.copytree(living_template.programme.root.parent, tmp_path / "prog", symlinks=True)
    base = tmp_path / "prog"
    return Living(
        Programme(base / "cases", base / "keys", base / "work"), base / "ssh", living_template.cases
    )


def snapshot(programme: Programme) -> tuple[object, ...]:
    """HEAD, the index, and every changed or new file's bytes: what a refusal keeps."""
    changed = programme.git("status", "--porcelain", "-z", "--untracked-files=all").split("\0")
    files = {name[3:]: (programme.root / name[3:]).read_bytes() for name in changed if name}
    return (*programme.state(), programme.git("diff", "HEAD", "--binary"), files)


def plain_commit(living: Living, staff_id: str, message: str = "procedure change") -> None:
    """Commit the work tree with plain git: signed by the person with their own key, in
    cmgit's author form, but not through cmgit."""
    author = f"{staff_id}@cmgit.invalid"
    done = run_git(
        living.programme.root,
        "-c",
        "gpg.format=ssh",
        "-c",
        f"user.signingkey={living.ssh / SIGNING_KEYS[staff_id]}",
        "-c",
        f"user.name={staff_id}",
        "-c",
        f"user.email={author}",
        "commit",
        "-q",
        "-S",
        "--no-verify",
        "-a",
        "-m",
        message,
        env={"TZ": "UTC"},  # cmgit's times are in UTC
    )
    assert done.returncode == 0, done.stderr


def built_site(programme: Programme, tmp_path: Path) -> Path:
    out = tmp_path / "built"
    built = programme.cli("site", "build", "--out", str(out), as_=None)
    assert built.exit_code == 0, built.output
    return out


# -- accepted: audit, the server and the site ---------------------------------------------


def sop_typo_fix(living: Living) -> None:
    programme = living.programme
    edit(programme, PAGE, "\n", f"\n\n{TYPO} with a first visit.\n")
    assert living.config_commit("sop_visit_note", "pm-001").exit_code == 0
    edit(programme, PAGE, TYPO, FIXED)


def new_optional_field(living: Living) -> None:
    add_form_field(living.programme, "preferred_language_code")


def new_guard(living: Living) -> None:
    edit(living.programme, WORKFLOW, T03, T03.replace("summary:", f"guards: [{GUARD}], summary:"))


def sop_shows(out: Path, head: str, staff_id: str) -> bool:
    page = (out / "sop" / "step-2-assessment.html").read_text(encoding="utf-8")
    return FIXED in page and TYPO not in page and f"by {staff_id} (commit {head[:12]})" in page


ACCEPTED: dict[str, tuple[str, Callable[[Living], None], Callable[[Path, str], bool]]] = {
    "sop_typo_fix": ("co-north", sop_typo_fix, lambda out, head: sop_shows(out, head, "co-north")),
    "new_language_field": (
        "pm-001",
        new_optional_field,
        lambda out, _: (
            markup.code("preferred_language_code") in (out / "reference" / "forms.html").read_text()
        ),
    ),
    "risk_level_before_assessment": (
        "pm-001",
        new_guard,
        lambda out, _: "T03" in guard_row(out, GUARD) and "T03" not in guard_row(out, "G08"),
    ),
}


def guard_row(out: Path, guard: str) -> str:
    """The row of the guards reference page for ``guard``: the transitions it judges."""
    page = (out / "reference" / "guards.html").read_text(encoding="utf-8")
    return page.split(f'id="{guard.lower()}"', 1)[1].split("</tr>", 1)[0]


@pytest.mark.parametrize("reason", sorted(ACCEPTED))
def test_an_allowed_change_passes_audit_and_the_server_and_reaches_the_site(
    living: Living, tmp_path: Path, reason: str
) -> None:
    staff_id, change, shown = ACCEPTED[reason]
    programme = living.programme
    server = central(programme, tmp_path)
    change(living)
    made = living.config_commit(reason, staff_id)
    assert made.exit_code == 0, made.output
    head = programme.git("rev-parse", "HEAD").strip()
    assert programme.git("log", "-1", "--format=%s") == f"config: {reason}\n"
    assert programme.git("status", "--porcelain") == ""
    code, report = audit(programme)
    assert code == 0 and report["ok"], report
    pushed = run_git(programme.root, "push", "-q", "origin", "main")
    assert pushed.returncode == 0, pushed.stderr
    assert run_git(server, "rev-parse", "main").stdout.strip() == head
    assert shown(built_site(programme, tmp_path), head)


# -- refused: the rule, nothing changed, and plain git fails audit ------------------------


def caseworkers_sop_change(living: Living) -> None:
    edit(living.programme, PAGE, "\n", "\n\nA caseworker's own procedure.\n")


def field_rename(living: Living) -> None:
    """The consent form's language_used renamed, without a migration: every consent the
    records hold has the old name."""
    target = living.programme.root / FORM
    doc = json.loads(target.read_text())
    doc["properties"]["language_code"] = doc["properties"].pop("language_used")
    doc["required"] = [("language_code" if f == "language_used" else f) for f in doc["required"]]
    target.write_text(json.dumps(doc, indent=2) + "\n")


def remove_state(living: Living) -> None:
    """The workflow without REMOVED_STATE: the state, the transitions into it and every
    mention of it, so nothing else in the workflow names a missing state."""
    target = living.programme.root / WORKFLOW
    doc = yaml.safe_load(target.read_text())
    del doc["states"][REMOVED_STATE]
    for tid, transition in list(doc["transitions"].items()):
        transition["from"] = [s for s in transition["from"] if s != REMOVED_STATE]
        if transition["to"] == REMOVED_STATE or not transition["from"]:
            del doc["transitions"][tid]
    for rule in [*doc["events"].values(), doc["assignment"]]:
        rule["states"] = [s for s in rule["states"] if s != REMOVED_STATE]
    for profile in doc["display_profiles"].values():
        del profile["labels"][REMOVED_STATE]
    target.write_text(yaml.safe_dump(doc, sort_keys=False))


def unknown_state(living: Living) -> None:
    edit(living.programme, WORKFLOW, T03, T03.replace("to: assessment", "to: assesment"))


REFUSED: dict[str, tuple[str, Callable[[Living], None], int, str]] = {
    "sop_by_caseworker": (
        "cw-north-1",
        caseworkers_sop_change,
        4,
        f"Error: cw-north-1 (caseworker) may not change {PAGE}: the roles in the setting "
        "sop_editors (programme_manager, coordinator) change it",
    ),
    "field_rename": (
        "pm-001",
        field_rename,
        4,
        "Error: the change would leave 3 of 3 record(s) invalid",
    ),
    "state_removed": (
        "pm-001",
        remove_state,
        4,
        f"Error: the change removes states that still hold cases: {REMOVED_STATE} (1 case(s))",
    ),
    "unknown_state": (
        "pm-001",
        unknown_state,
        3,
        "Error: workflow data is inconsistent: T03 names an unknown state",
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_change_that_breaks_a_rule_is_refused_changes_nothing_and_fails_audit_by_plain_git(
    living: Living, name: str
) -> None:
    staff_id, change, exit_code, message = REFUSED[name]
    programme = living.programme
    change(living)
    before = snapshot(programme)
    refused = living.config_commit(name, staff_id)
    assert refused.exit_code == exit_code, refused.output
    assert refused.stderr.startswith(message), refused.stderr
    assert CANARY not in refused.output
    assert snapshot(programme) == before

    plain_commit(living, staff_id)
    code, report = audit(programme)
    assert code == 6 and "message" in rules(report), report


def test_a_removed_state_holding_cases_is_listed_by_the_dry_run(living: Living) -> None:
    remove_state(living)
    before = snapshot(living.programme)
    dry = living.cli("config", "commit", "--dry-run", "--json", as_="pm-001")
    assert dry.exit_code == 0, dry.output
    shown = json.loads(dry.stdout)
    assert shown["cases_in_removed_states"] == [
        {"state": REMOVED_STATE, "count": 1, "cases": [living.cases["held"]]}
    ]
    assert shown["commit"] is None and CANARY not in dry.output
    text = living.cli("config", "commit", "--dry-run", as_="pm-001")
    assert text.exit_code == 0 and "cases_in_removed_states:" in text.stdout
    assert snapshot(living.programme) == before


# -- a guard judges what comes after it --------------------------------------------------


def test_a_new_guard_judges_later_transitions_only(living: Living, tmp_path: Path) -> None:
    """A move made before the guard was added stays valid; the same move after it,
    without meeting the guard, is refused by cmgit and, committed with plain git in
    cmgit's own form and signed by the caseworker, flagged by audit and refused by the
    central repository."""
    programme = living.programme
    first, second = living.cases["first"], living.cases["second"]
    moved = living.cli("move", first, "assessment", as_="cw-north-1")
    assert moved.exit_code == 0, moved.output
    # The move of the second case as cmgit makes it before the guard, kept aside.
    moved = living.cli("move", second, "assessment", as_="cw-north-1")
    assert moved.exit_code == 0, moved.output
    path = ids.record_path(second)
    record = (programme.root / path).read_bytes()
    message = programme.git("log", "-1", "--format=%B")
    programme.git("reset", "-q", "--hard", "HEAD~1")

    new_guard(living)
    assert living.config_commit("risk_level_before_assessment", "pm-001").exit_code == 0
    assert audit(programme)[0] == 0  # the move made before the guard is not flagged
    central(programme, tmp_path)

    before = snapshot(programme)
    refused = living.cli("move", second, "assessment", as_="cw-north-1")
    assert refused.exit_code == 4, refused.output
    assert f"{GUARD}: {GUARD_REFUSAL}" in refused.stderr
    assert snapshot(programme) == before

    (programme.root / path).write_bytes(record)
    plain_commit(living, "cw-north-1", message.strip() + "\n")
    code, report = audit(programme)
    head = programme.git("rev-parse", "HEAD").strip()
    assert code == 6, report
    # The guard recomputed fails, and the move lists the guards of the workflow before it.
    assert {(v["commit"][:12], v["rule"]) for v in report["violations"]} == {
        (head[:12], "guard"),
        (head[:12], "guards"),
    }
    flagged = report["violations"][0]["detail"]
    assert flagged == f"{second}: T03 without {GUARD} ({GUARD_SUMMARY})", flagged
    pushed = run_git(programme.root, "push", "-q", "origin", "main")
    assert pushed.returncode != 0 and "guard" in pushed.stderr, pushed.stderr
