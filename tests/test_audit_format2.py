"""`cmgit audit` and the central repository's hook judge record format 2 without a key:
open files, sealed entries added once with their record's version and never changed,
the erasure of a case by two programme managers after its retention, key recovery (#17).

Real repositories and real age keys; each tampering is a commit a malicious insider
could push, flagged by audit and refused by the hook with the same rule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from cmgit import crypto, entries, ids
from cmgit.errors import GitFailed
from cmgit.history import Git
from cmgit.trail import FORMAT_TRAILER, MESSAGE_FORM

from .conftest import TODAY, Programme
from .test_audit import audit, forge, rules
from .test_hooks import run_git
from .test_sealed_entries_e2e import record_note, second_manager, to_sealed_entries

LATER = "2026-06-01"  # past the one month of retention of a case the walk closed


@dataclass
class Sealed:
    """A programme in record format 2 with a central repository running the hook."""

    programme: Programme
    central: Path
    custodians: list[Path]

    def cli(self, *args: str, as_: str = "pm-001", today: str = TODAY) -> None:
        made = self.programme.cli(*args, as_=as_, today=today)
        assert made.exit_code == 0, made.output

    def push(self) -> tuple[int, str]:
        pushed = run_git(self.programme.root, "push", "-q", "origin", "main")
        return pushed.returncode, pushed.stderr

    def entry(self, case_id: str, version: int) -> bytes:
        return (self.programme.root / entries.entry_path(case_id, version)).read_bytes()

    def version(self, case_id: str) -> int:
        text = (self.programme.root / ids.record_path(case_id)).read_text()
        return int(text.split("\nversion: ", 1)[1].split("\n", 1)[0])

    def bumped(self, case_id: str) -> tuple[int, dict[str, bytes | None]]:
        """The case's next version and its open file at that version."""
        path = self.programme.root / ids.record_path(case_id)
        version = self.version(case_id)
        text = path.read_text().replace(f"\nversion: {version}\n", f"\nversion: {version + 1}\n")
        return version + 1, {ids.record_path(case_id): text.encode()}


@pytest.fixture
def sealed(programme: Programme, tmp_path: Path) -> Sealed:
    root = programme.root
    central = tmp_path / "central.git"
    assert run_git(tmp_path, "clone", "-q", "--bare", str(root), str(central)).returncode == 0
    hooked = programme.cli(
        "-C", str(central), "hooks", "install", "--server", "--allow-unsigned", as_=None
    )
    assert hooked.exit_code == 0, hooked.output
    run_git(root, "remote", "add", "origin", str(central))
    files = []
    for n in range(1, 4):
        secret, recipient = crypto.generate_identity()
        files.append(tmp_path / f"custodian-{n}.txt")
        crypto.write_identity_file(files[-1], secret, recipient)
    recipients = ",".join(crypto.load_identities(f)[0].recipient for f in files)
    state = Sealed(programme, central, files)
    state.cli("settings", "set", "recovery_recipients", f"[{recipients}]")
    state.cli("settings", "set", "retention_period_months", "1")
    second_manager(programme)
    return state


def record_trailers(case_id: str, version: int, actor: str = "cw-north-1") -> list[tuple[str, str]]:
    return [
        ("Cmgit-Case", case_id),
        ("Cmgit-Action", "record"),
        ("Cmgit-Form", "note"),
        ("Cmgit-Version", str(version)),
        ("Cmgit-Date", TODAY),
        ("Cmgit-Actor", actor),
        ("Cmgit-Role", "caseworker"),
        (FORMAT_TRAILER, MESSAGE_FORM),
    ]


def flagged_and_refused(
    state: Sealed, files: dict[str, bytes | None], trailers: list[tuple[str, str]], rule: str
) -> None:
    """A forged commit of ``files``: audit flags it with ``rule`` and the central
    repository refuses it with the same rule; then it is taken back."""
    actor = dict(trailers)["Cmgit-Actor"]
    forge(state.programme, files, "forged", trailers, actor)
    code, report = audit(state.programme)
    assert code == 6 and rule in rules(report), report["violations"]
    refused, stderr = state.push()
    assert refused != 0 and f" {rule}: " in stderr, stderr
    run_git(state.programme.root, "reset", "-q", "--hard", "HEAD~1")


def test_a_format_2_programme_audits_clean_and_lands_on_the_central(sealed: Sealed) -> None:
    programme = sealed.programme
    case_id = programme.new_case()
    record_note(programme, case_id, "a visit")
    sealed.cli("assign", case_id, "cw-north-2", "--reason", "caseload_balancing", as_="sv-north")
    closed = programme.walk("closed_no_concern")
    for who in ("pm-001", "pm-002"):
        sealed.cli("purge", closed, "--reason", "retention_ended", as_=who, today=LATER)
    custodians = [str(path) for path in sealed.custodians[:2]]
    sealed.cli("recover-key", case_id, "--custodian", custodians[0], "--custodian", custodians[1])
    code, report = audit(programme, "--full")
    assert code == 0 and report["ok"], report["violations"]
    assert report["sealed_entries_unchecked"] == 0
    actions = programme.git("log", "--format=%(trailers:key=Cmgit-Action,valueonly)")
    assert {"new", "record", "move", "assign", "purge-proposed", "purge", "key-recovery"} <= set(
        actions.split()
    )
    pushed, stderr = sealed.push()
    assert pushed == 0, stderr


@pytest.fixture
def two_cases(sealed: Sealed) -> tuple[Sealed, str, str]:
    case_id = sealed.programme.new_case()
    record_note(sealed.programme, case_id, "a visit")
    other = sealed.programme.new_case()
    assert sealed.push()[0] == 0
    return sealed, case_id, other


EntryFiles = dict[str, bytes | None]


def forged_record(state: Sealed, case_id: str, make: Callable[[int], EntryFiles]) -> None:
    """A `record` of the case forged one version on, with the entry files ``make`` gives
    for that version: flagged by audit and refused by the hook with rule `sealed`."""
    version, record = state.bumped(case_id)
    files = {**record, **make(version)}
    flagged_and_refused(state, files, record_trailers(case_id, version), "sealed")


def test_an_entry_changed_is_flagged_and_refused(two_cases: tuple[Sealed, str, str]) -> None:
    state, case_id, _ = two_cases
    forged_record(
        state, case_id, lambda _: {entries.entry_path(case_id, 1): state.entry(case_id, 2)}
    )


def test_an_entry_deleted_is_flagged_and_refused(two_cases: tuple[Sealed, str, str]) -> None:
    state, case_id, _ = two_cases
    forged_record(state, case_id, lambda _: {entries.entry_path(case_id, 1): None})


def test_an_entry_renamed_to_another_version_is_flagged_and_refused(
    two_cases: tuple[Sealed, str, str],
) -> None:
    state, case_id, _ = two_cases
    renamed = state.entry(case_id, 2)
    forged_record(
        state,
        case_id,
        lambda version: {
            entries.entry_path(case_id, 2): None,
            entries.entry_path(case_id, version): renamed,
        },
    )


def test_an_entry_copied_from_another_case_is_flagged_and_refused(
    two_cases: tuple[Sealed, str, str],
) -> None:
    """Nothing but the blob tells a copy: named and versioned as the real thing."""
    state, case_id, other = two_cases
    theirs = state.entry(other, 1)
    forged_record(state, case_id, lambda version: {entries.entry_path(case_id, version): theirs})
    # From a verified commit on, the entries before it are listed, and still compared.
    assert audit(state.programme)[0] == 0
    forged_record(state, case_id, lambda version: {entries.entry_path(case_id, version): theirs})


def small(recipient: str) -> bytes:
    return crypto.seal_file(b"x" * 100, [recipient])


def armored(recipient: str) -> bytes:
    return crypto.seal(b"x" * 2000, [recipient]).encode()


def two_stanzas(recipient: str) -> bytes:
    return crypto.seal_file(b"x" * 2000, [recipient, crypto.generate_identity()[1]])


@pytest.mark.parametrize("make", [small, armored, two_stanzas])
def test_an_entry_not_as_cmgit_seals_one_is_flagged_and_refused(
    two_cases: tuple[Sealed, str, str], make: Callable[[str], bytes]
) -> None:
    state, case_id, _ = two_cases
    sealed = make(crypto.generate_identity()[1])
    forged_record(state, case_id, lambda version: {entries.entry_path(case_id, version): sealed})


def test_a_file_of_another_name_under_sealed_is_flagged_and_refused(
    two_cases: tuple[Sealed, str, str],
) -> None:
    state, case_id, _ = two_cases
    notes = f"{entries.entries_dir(case_id)}/notes.age"
    forged_record(state, case_id, lambda _: {notes: state.entry(case_id, 2)})


def test_a_second_entry_in_one_commit_is_flagged(two_cases: tuple[Sealed, str, str]) -> None:
    state, case_id, _ = two_cases
    version, record = state.bumped(case_id)
    recipient = crypto.generate_identity()[1]
    added = {
        entries.entry_path(case_id, version): crypto.seal_file(b"x" * 2000, [recipient]),
        entries.entry_path(case_id, version + 1): crypto.seal_file(b"y" * 2000, [recipient]),
    }
    forge(
        state.programme,
        {**record, **added},
        "forged",
        record_trailers(case_id, version),
        "cw-north-1",
    )
    code, report = audit(state.programme)
    details = [v["detail"] for v in report["violations"] if v["rule"] == "sealed"]
    assert code == 6 and any("more than one entry" in d for d in details), details


@pytest.fixture
def proposed(sealed: Sealed) -> tuple[Sealed, str]:
    """A closed case whose erasure pm-001 proposed."""
    closed = sealed.programme.walk("closed_no_concern")
    sealed.cli("purge", closed, "--reason", "retention_ended", today=LATER)
    assert sealed.push()[0] == 0
    return sealed, closed


def purge_commit(
    state: Sealed, case_id: str, actor: str, day: str
) -> tuple[dict[str, bytes | None], list[tuple[str, str]]]:
    version, record = state.bumped(case_id)
    folder = entries.entries_dir(case_id)
    gone: dict[str, bytes | None] = {
        path: None for path in state.programme.git("ls-files", folder).split()
    }
    assert gone
    event = state.programme.git("log", "-1", "--format=%(trailers:key=Cmgit-Event,valueonly)")
    trailers = [
        ("Cmgit-Case", case_id),
        ("Cmgit-Action", "purge"),
        ("Cmgit-Event", event.strip()),
        ("Cmgit-Reason", "retention_ended"),
        ("Cmgit-Proposer", "pm-001"),
        ("Cmgit-Version", str(version)),
        ("Cmgit-Date", day),
        ("Cmgit-Actor", actor),
        ("Cmgit-Role", "programme_manager"),
        (FORMAT_TRAILER, MESSAGE_FORM),
    ]
    return {**record, **gone}, trailers


def test_a_purge_by_its_own_proposer_is_flagged_and_refused(
    proposed: tuple[Sealed, str],
) -> None:
    state, case_id = proposed
    files, trailers = purge_commit(state, case_id, "pm-001", LATER)
    flagged_and_refused(state, files, trailers, "four-eyes")


def test_a_purge_before_the_retention_ends_is_flagged_and_refused(
    proposed: tuple[Sealed, str],
) -> None:
    state, case_id = proposed
    text = (state.programme.root / ids.record_path(case_id)).read_text()
    closed_on = text.split("\nclosed_on: ", 1)[1].split("\n", 1)[0].strip("'\"")
    files, trailers = purge_commit(state, case_id, "pm-002", closed_on)
    flagged_and_refused(state, files, trailers, "retention")


def test_a_purge_by_a_second_manager_passes(proposed: tuple[Sealed, str]) -> None:
    """The forged purges above differ from this one in the one thing each tests."""
    state, case_id = proposed
    files, trailers = purge_commit(state, case_id, "pm-002", LATER)
    forge(state.programme, files, f"{case_id}: purge", trailers, "pm-002")
    code, report = audit(state.programme)
    assert code == 0, report["violations"]


def key_event(
    state: Sealed, case_id: str, action: str, actor: str, role: str, **extra: str
) -> tuple[dict[str, bytes | None], list[tuple[str, str]]]:
    version, record = state.bumped(case_id)
    prefix = {"purge-proposed": "purge-", "key-recovery": "recovery-"}[action]
    trailers = [
        ("Cmgit-Case", case_id),
        ("Cmgit-Action", action),
        ("Cmgit-Event", f"{prefix}0123ABCD"),
        *extra.items(),
        ("Cmgit-Version", str(version)),
        ("Cmgit-Date", TODAY),
        ("Cmgit-Actor", actor),
        ("Cmgit-Role", role),
        (FORMAT_TRAILER, MESSAGE_FORM),
    ]
    return record, trailers


def test_key_events_by_a_programme_manager_pass_and_others_are_flagged(
    two_cases: tuple[Sealed, str, str],
) -> None:
    state, case_id, _ = two_cases
    custodians = {"Cmgit-Custodians": "custodian-1 custodian-3"}
    files, trailers = key_event(
        state, case_id, "key-recovery", "pm-001", "programme_manager", **custodians
    )
    forge(state.programme, files, f"{case_id}: key-recovery", trailers, "pm-001")
    assert audit(state.programme)[0] == 0
    run_git(state.programme.root, "reset", "-q", "--hard", "HEAD~1")
    wrong = {"Cmgit-Custodians": "custodian-1 custodian-9"}
    files, trailers = key_event(
        state, case_id, "key-recovery", "pm-001", "programme_manager", **wrong
    )
    flagged_and_refused(state, files, trailers, "message")
    files, trailers = key_event(state, case_id, "purge-proposed", "sv-north", "supervisor")
    flagged_and_refused(state, files, trailers, "scope")
    files, trailers = key_event(state, case_id, "purge-proposed", "pm-001", "programme_manager")
    path = ids.record_path(case_id)
    assert b"\ncaseworker: cw-north-1\n" in (files[path] or b"")
    files[path] = files[path].replace(b"caseworker: cw-north-1", b"caseworker: cw-north-2")  # type: ignore[union-attr]
    flagged_and_refused(state, files, trailers, "transition")


def test_a_migration_to_sealed_entries_without_an_entry_is_flagged(
    format_1_programme: Programme,
) -> None:
    """The migration that brings records to sealed entries adds one entry to each."""
    programme = format_1_programme
    case_id = programme.new_case()
    to_sealed_entries(programme)
    made = programme.git("show", "--name-only", "--format=", "HEAD").split()
    message = programme.git("log", "-1", "--format=%B")
    trailers = [
        (key, value)
        for key, _, value in (line.partition(": ") for line in message.splitlines()[2:])
        if value
    ]
    entry = entries.entry_path(case_id, 2)
    assert entry in made, made
    files: dict[str, bytes | None] = {
        path: (programme.root / path).read_bytes() for path in made if path != entry
    }
    run_git(programme.root, "reset", "-q", "--hard", "HEAD~1")
    forge(programme, files, message.splitlines()[0], trailers, "pm-001")
    code, report = audit(programme)
    # Judged by the configuration it makes, the change fails: it is not in force, and
    # audit says why.
    details = [v["detail"] for v in report["violations"] if v["rule"] == "config"]
    assert code == 6 and any(
        "migration: 1 record(s) brought to sealed entries without an entry" in d for d in details
    ), report["violations"]


def test_an_offline_reader_never_fetches_what_a_partial_clone_lacks(
    programme: Programme, tmp_path: Path
) -> None:
    """What audit reads with: git 2.39 would fetch a missing object from the remote as
    soon as anything read it; offline, the read fails and nothing is fetched."""
    programme.new_case()  # its sealed entry: larger than the filter
    programme.git("config", "uploadpack.allowFilter", "true")
    clone = tmp_path / "partial"
    url = f"file://{programme.root}"
    made = run_git(
        tmp_path, "clone", "-q", "--no-checkout", "--filter=blob:limit=1024", url, str(clone)
    )
    assert made.returncode == 0, made.stderr
    missing = Git(clone).missing_objects("HEAD")
    assert missing
    oid = sorted(missing)[0]
    with pytest.raises(GitFailed):
        Git(clone, offline=True).read_blob(oid)
    assert oid in Git(clone).missing_objects("HEAD")
    Git(clone).read_blob(oid)  # an ordinary reader fetches it
    assert oid not in Git(clone).missing_objects("HEAD")
