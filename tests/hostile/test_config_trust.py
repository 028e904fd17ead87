"""A configuration change that audit would flag is never acted on (issue 14).

Schemas, the workflow and the settings are judged as the staff registry is: the
configuration in force is each part as of its last valid change, a programme manager's
signed commit of a known configuration action. A change committed any other way (here:
plain git, by a caseworker, signed with their own key) leaves the command line refusing
every change and reading with the configuration before it, saying which commit to undo;
audit flags that commit and judges what was done after it by the configuration in force.
"""

from __future__ import annotations

import datetime as dt
import json
from functools import cached_property
from pathlib import Path

import pytest

from cmgit import audit as audit_module
from cmgit import crypto
from cmgit.audit import Auditor, Sources
from cmgit.errors import REFUSED, REPOSITORY
from cmgit.history import Git
from cmgit.store import Repository

from ..conftest import CANARY, TODAY, Programme, form
from ..test_audit import audit, forge
from ..test_hooks import run_git
from ..test_signing import require_signatures
from .refusal import assert_refused, snapshot
from .test_crypto_faults import server_for

REFUSAL = "which cmgit audit flags"
WORKFLOW = "schemas/workflow.yaml"
# T02 (close without registration) is the authorisers', with a second person's approval.
T02_AS_SHIPPED = (
    "    to: closed\n    by: authorisers\n    four_eyes: G20\n    reasons: {consent_declined"
)
T02_OPENED = "    to: closed\n    by: case_workers\n    reasons: {consent_declined"


def commit_by_hand(programme: Programme, path: str, text: str, *, as_: str, key: Path) -> str:
    """Commit a changed file with plain git, signed by AS_'s own SSH key; its short id."""
    (programme.root / path).write_text(text)
    done = run_git(
        programme.root, *as_signer(as_, key), "commit", "-q", "-m", f"update {path}", path
    )
    assert done.returncode == 0, done.stderr
    assert "\ngpgsig -----BEGIN SSH SIGNATURE-----" in programme.git("cat-file", "commit", "HEAD")
    return programme.git("rev-parse", "--short=12", "HEAD").strip()


def unsign_by_hand(programme: Programme, cw_key: Path) -> str:
    """A caseworker's plain-git commit that switches signatures off in settings.yaml."""
    settings = (programme.root / "settings.yaml").read_text()
    assert "require_signed_commits: true" in settings
    return commit_by_hand(
        programme,
        "settings.yaml",
        settings.replace("require_signed_commits: true", "require_signed_commits: false"),
        as_="cw-north-1",
        key=cw_key,
    )


def as_signer(staff_id: str, key: Path) -> list[str]:
    """git options that commit as STAFF_ID, signing with the SSH key KEY."""
    return [
        *("-c", f"user.name={staff_id}", "-c", f"user.email={staff_id}@cmgit.invalid"),
        *("-c", "gpg.format=ssh", "-c", f"user.signingkey={key}", "-c", "commit.gpgSign=true"),
    ]


def signed(key: Path) -> dict[str, str]:
    return {"CMGIT_SIGNING_KEY": str(key)}


def flagged(report: dict, short: str) -> set[str]:  # type: ignore[type-arg]
    """The rules audit names for the commit SHORT."""
    return {v["rule"] for v in report["violations"] if v["commit"].startswith(short)}


def assert_read_only_says_so(programme: Programme, short: str, *args: str) -> str:
    """A read-only command works, and says the configuration is not in force."""
    result = programme.cli(*args)
    assert result.exit_code == 0, result.output
    warning = f"Warning: the configuration was changed by commit {short}, {REFUSAL}"
    assert warning in result.stderr, result.stderr
    assert CANARY not in result.output
    return result.stdout


class CmgitActingOnHead(Repository):
    """cmgit as it was before it judged its configuration: it acted on whatever was
    committed at HEAD. The way a commit made under a tampered configuration reaches a
    history, built with cmgit's own library so that it is exactly such a commit."""

    @cached_property
    def _trust(self) -> tuple[Sources, dict[str, str]]:
        self._loaded_key = self._config_key()
        head = self.git.head()
        assert head is not None
        return (head, head, head), {}


def test_a_workflow_opened_by_a_caseworker_is_not_acted_on(
    programme: Programme, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pm_key, cw_key = require_signatures(programme, tmp_path)
    made = programme.cli("new", "--from", programme.form_file("identification"), env=signed(cw_key))
    assert made.exit_code == 0, made.output
    case_id = made.stdout.strip()
    central = server_for(programme, tmp_path)
    central_head = run_git(central, "rev-parse", "main").stdout
    shipped = (programme.root / WORKFLOW).read_text()
    assert T02_AS_SHIPPED in shipped
    short = commit_by_hand(
        programme,
        WORKFLOW,
        shipped.replace(T02_AS_SHIPPED, T02_OPENED),
        as_="cw-north-1",
        key=cw_key,
    )

    # the caseworker's closure through the opened transition: refused, nothing changed
    before = snapshot(programme)
    closing = ("move", case_id, "closed", "--reason", "duplicate")
    line = assert_refused(
        programme, programme.cli(*closing, env=signed(cw_key)), REPOSITORY, before, says=REFUSAL
    )
    assert f"commit {short}" in line and "programme manager reverts" in line
    # ...and so is every other change, by anyone, under that configuration
    assert_refused(
        programme,
        programme.cli("move", case_id, "closed", "--reason", "duplicate", as_="sv-north"),
        REPOSITORY,
        before,
        says=short,
    )
    assert_refused(
        programme,
        programme.cli("settings", "set", "caseload_limit", "30", as_="pm-001", env=signed(pm_key)),
        REPOSITORY,
        before,
        says=short,
    )
    # read-only commands read with the workflow in force, and say why
    shown = assert_read_only_says_so(programme, short, "workflow", "--json")
    t02 = next(t for t in json.loads(shown) if t["id"] == "T02")
    assert "caseworker" not in t02["by"] and t02["four_eyes"] == "G20"
    assert case_id in assert_read_only_says_so(programme, short, "list")

    # audit flags the change of the workflow
    code, report = audit(programme)
    assert code == REPOSITORY and flagged(report, short), report

    # a closure forced in under it (as cmgit acting on HEAD would have made it) is judged
    # by the workflow in force: the caseworker may not close, nor authorise their own case
    older = CmgitActingOnHead.open(programme.root)
    older.signing_key_path = cw_key
    older.move(
        programme.identities("cw-north-1"),
        case_id,
        "closed",
        today=dt.date.fromisoformat(TODAY),
        reason="duplicate",
    )
    closure = programme.git("rev-parse", "--short=12", "HEAD").strip()
    assert programme.git("log", "-1", "--format=%(trailers:key=Cmgit-Transition)").strip() == (
        "Cmgit-Transition: T02"
    )
    code, report = audit(programme, "--full")
    assert code == REPOSITORY and flagged(report, short), report
    assert {"scope", "four-eyes"} <= flagged(report, closure), report
    # the central repository refuses both, and stays as it was
    pushed = run_git(programme.root, "push", "-q", "origin", "main")
    assert pushed.returncode != 0 and f"{closure} scope" in pushed.stderr, pushed.stderr
    assert f"{short} " in pushed.stderr and CANARY not in pushed.stderr
    assert run_git(central, "rev-parse", "main").stdout == central_head
    # judged alike when the history is read in many batches, on every core
    monkeypatch.setattr(audit_module, "BATCH", 2)
    in_batches = Auditor(Git(programme.root)).run(remembered=False)
    assert in_batches.checked > 2 * 2 and {(v.commit, v.rule) for v in in_batches.violations} == {
        (v["commit"], v["rule"]) for v in report["violations"]
    }

    # the way back: a programme manager reverts the change, and cmgit acts again
    reverted = run_git(programme.root, *as_signer("pm-001", pm_key), "revert", "--no-edit", short)
    assert reverted.returncode == 0, reverted.stderr
    listed = programme.cli("list")
    assert listed.exit_code == 0 and "Warning" not in listed.stderr, listed.output
    again = programme.cli(
        "new", "--from", programme.form_file("identification"), env=signed(cw_key)
    )
    assert again.exit_code == 0 and again.stderr == "", again.output


def test_settings_changed_by_a_caseworker_are_not_acted_on(
    programme: Programme, tmp_path: Path
) -> None:
    """Signatures switched off by hand: cmgit does not commit unsigned, and audit judges
    the unsigned commits by the settings in force."""
    pm_key, cw_key = require_signatures(programme, tmp_path)
    short = unsign_by_hand(programme, cw_key)
    before = snapshot(programme)
    assert_refused(
        programme,
        programme.cli("new", "--from", programme.form_file("identification")),
        REPOSITORY,
        before,
        says=f"commit {short}, {REFUSAL}",
    )
    shown = assert_read_only_says_so(programme, short, "settings", "show", "--json")
    assert json.loads(shown)["require_signed_commits"] is True

    # an unsigned case forced in under it is an unsigned commit where signatures are required
    older = CmgitActingOnHead.open(programme.root)
    older.new_case(
        programme.identities("cw-north-1"),
        Path(programme.form_file("identification")).read_bytes(),
        today=dt.date.fromisoformat(TODAY),
    )
    unsigned = programme.git("rev-parse", "--short=12", "HEAD").strip()
    code, report = audit(programme)
    assert code == REPOSITORY and flagged(report, short), report
    assert "signature" in flagged(report, unsigned), report

    # the way back through cmgit: a programme manager's settings command writes the file
    # anew from the settings in force, and so puts them back; a caseworker's may not
    before = snapshot(programme)
    assert_refused(
        programme,
        programme.cli("settings", "set", "caseload_limit", "30", env=signed(cw_key)),
        REFUSED,
        before,
    )
    repaired = programme.cli(
        "settings", "set", "caseload_limit", "30", as_="pm-001", env=signed(pm_key)
    )
    assert repaired.exit_code == 0 and "Warning" not in repaired.stderr, repaired.output
    repair = programme.git("rev-parse", "--short=12", "HEAD").strip()
    assert "require_signed_commits: true" in (programme.root / "settings.yaml").read_text()
    again = programme.cli(
        "new", "--from", programme.form_file("identification"), env=signed(cw_key)
    )
    assert again.exit_code == 0 and again.stderr == "", again.output
    code, report = audit(programme, "--full")
    assert not flagged(report, repair) and flagged(report, short), report


def test_a_form_schema_loosened_by_hand_is_not_acted_on(
    programme: Programme, tmp_path: Path
) -> None:
    """An identification form that takes any field: a child's details in a field no
    schema names would be sealed unchecked, or worse. Refused, and flagged."""
    _, cw_key = require_signatures(programme, tmp_path)
    path = "schemas/forms/identification.schema.json"
    schema = json.loads((programme.root / path).read_text())
    assert schema["additionalProperties"] is False
    schema["additionalProperties"] = True
    short = commit_by_hand(
        programme, path, json.dumps(schema, indent=2) + "\n", as_="cw-north-1", key=cw_key
    )
    doc = form("identification")
    doc["identification"]["nickname"] = f"{CANARY} nickname"
    before = snapshot(programme)
    assert_refused(
        programme,
        programme.cli("new", "--from", programme.form_file("intake", doc), env=signed(cw_key)),
        REPOSITORY,
        before,
        says=f"commit {short}, {REFUSAL}",
    )
    assert_read_only_says_so(programme, short, "validate")
    code, report = audit(programme)
    assert code == REPOSITORY and flagged(report, short), report


def test_a_shallow_clone_takes_its_oldest_commit_as_the_trust_root(
    programme: Programme, tmp_path: Path
) -> None:
    """Its history ends where the clone does: commands work on what is there (audit
    refuses to start from that point without a commit named as trusted)."""
    case_id = programme.new_case()
    shallow = tmp_path / "shallow"
    cloned = run_git(
        tmp_path, "clone", "-q", "--depth", "2", f"file://{programme.root}", str(shallow)
    )
    assert cloned.returncode == 0, cloned.stderr
    listed = programme.cli("-C", str(shallow), "list")
    assert listed.exit_code == 0 and case_id in listed.stdout, listed.output
    assert "Warning" not in listed.stderr, listed.stderr


def test_a_managers_change_that_does_not_validate_is_not_in_force(
    programme: Programme, tmp_path: Path
) -> None:
    """Signed by the programme manager, in cmgit's form, yet settings no schema allows:
    judged by the configuration it makes, it fails, so it is not in force, and audit
    says so on the commit the command line names."""
    pm_key, cw_key = require_signatures(programme, tmp_path)
    settings = (programme.root / "settings.yaml").read_text()
    line = next(x for x in settings.splitlines() if x.startswith("caseload_limit:"))
    forge(
        programme,
        {"settings.yaml": settings.replace(line, "caseload_limit: lots").encode()},
        "settings: set caseload_limit",
        [
            ("Cmgit-Action", "settings-set"),
            ("Cmgit-Setting", "caseload_limit"),
            ("Cmgit-Actor", "pm-001"),
            ("Cmgit-Role", "programme_manager"),
        ],
        "pm-001",
        sign_with=pm_key,
    )
    short = programme.git("rev-parse", "--short=12", "HEAD").strip()
    before = snapshot(programme)
    assert_refused(
        programme,
        programme.cli("new", "--from", programme.form_file("identification"), env=signed(cw_key)),
        REPOSITORY,
        before,
        says=f"commit {short}, {REFUSAL}",
    )
    shown = assert_read_only_says_so(programme, short, "settings", "show", "--json")
    assert isinstance(json.loads(shown)["caseload_limit"], int)
    code, report = audit(programme)
    assert code == REPOSITORY and flagged(report, short) == {"config"}, report
    (detail,) = [v["detail"] for v in report["violations"]]
    assert detail.startswith("the change is not in force: config: "), detail


def test_every_commit_that_left_a_part_out_of_force_is_named(
    programme: Programme, tmp_path: Path
) -> None:
    _, cw_key = require_signatures(programme, tmp_path)
    workflow = (programme.root / WORKFLOW).read_text()
    opened = commit_by_hand(
        programme,
        WORKFLOW,
        workflow.replace(T02_AS_SHIPPED, T02_OPENED),
        as_="cw-north-1",
        key=cw_key,
    )
    unsigned = unsign_by_hand(programme, cw_key)
    before = snapshot(programme)
    assert_refused(
        programme,
        programme.cli("new", "--from", programme.form_file("identification"), env=signed(cw_key)),
        REPOSITORY,
        before,
        says=f"changed by commits {opened}, {unsigned}, {REFUSAL}",
    )


def test_an_outsider_added_to_the_registry_by_hand_is_removed_by_the_next_staff_command(
    programme: Programme, tmp_path: Path
) -> None:
    """A caseworker adds an outsider's key as a supervisor with plain git. Nothing is
    sealed to it; the programme manager's next staff command writes the registry anew
    from the one in force, without the outsider, and cmgit works again."""
    pm_key, cw_key = require_signatures(programme, tmp_path)
    _, outsider = crypto.generate_identity()
    staff = (programme.root / "staff.yaml").read_text()
    rogue = (
        f"  sv-rogue:\n    role: supervisor\n    team: north\n    recipient: {outsider}\n"
        "    signing_key: null\n    active: true\n"
    )
    short = commit_by_hand(
        programme, "staff.yaml", staff.rstrip("\n") + "\n" + rogue, as_="cw-north-1", key=cw_key
    )
    listed = assert_read_only_says_so(programme, short, "staff", "list")
    assert "sv-rogue" not in listed
    updated = programme.cli(
        "staff", "update", "cw-north-2", "--team", "south", as_="pm-001", env=signed(pm_key)
    )
    assert updated.exit_code == 0 and "Warning" not in updated.stderr, updated.output
    assert outsider not in (programme.root / "staff.yaml").read_text()
    made = programme.cli("new", "--from", programme.form_file("identification"), env=signed(cw_key))
    assert made.exit_code == 0 and made.stderr == "", made.output
    code, report = audit(programme, "--full")
    assert code == REPOSITORY and {v["commit"][:12] for v in report["violations"]} == {short}


def test_what_is_remembered_in_force_follows_the_history_back(programme: Programme) -> None:
    """The configuration in force is remembered by commit; after the branch is set back,
    the remembered point is no ancestor, and the history is judged again."""
    _, recipient = crypto.generate_identity()
    added = programme.cli(
        "staff", "add", "cw-north-9", "--role", "caseworker", "--team", "north",
        "--recipient", recipient, as_="pm-001",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "cw-north-9" in programme.cli("staff", "list").stdout
    programme.git("reset", "-q", "--hard", "HEAD~1")
    listed = programme.cli("staff", "list")
    assert listed.exit_code == 0 and "cw-north-9" not in listed.stdout, listed.output
    assert "Warning" not in listed.stderr, listed.stderr
