"""Referral and transfer packages end to end: real repositories, real age keys, and a
second agency's identity (and, for a transfer, its own case repository)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cmgit import crypto, ids
from cmgit.audit import config_in_force
from cmgit.errors import NotARecipient

from .conftest import Programme, build_programme, form, write_form
from .test_audit import audit, forge

PROVIDER = "PRV-RC-01"
RECEIVER = "PRV-EAST-02"
CODE_RE = re.compile(r"receipt code ([0-9A-Z]{4}(?:-[0-9A-Z]{4}){3})")


def agency_key(folder: Path, name: str) -> tuple[Path, str]:
    secret, recipient = crypto.generate_identity()
    path = folder / f"{name}.txt"
    crypto.write_identity_file(path, secret, recipient)
    return path, recipient


def set_directory(programme: Programme, providers: dict[str, Any]) -> None:
    write_form(programme.root / "providers.yaml", {"providers": providers})
    made = programme.cli("config", "commit", "-m", "service_directory", as_="pm-001")
    assert made.exit_code == 0, made.output


def entry(recipient: str | None, *, in_force: bool = True) -> dict[str, Any]:
    found: dict[str, Any] = {
        "name": "Red Cross tracing",
        "area": "North district",
        "services": ["family_tracing_reunification"],
        "information_sharing_agreement": {"in_force": in_force, "signed_on": "2026-01-10"},
    }
    if recipient:
        found["package_recipient"] = recipient
    return found


def recorded(programme: Programme, case_id: str, name: str, doc: dict[str, Any]) -> str:
    done = programme.cli("record", case_id, name, "--from", programme.form_file(name, doc))
    assert done.exit_code == 0, done.output
    return str(done.stdout.strip().rsplit(" ", 1)[1])


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, str):
        yield value


def flip_one_character(armored: bytes) -> bytes:
    """The package with one base64 character of its middle line changed."""
    lines = armored.splitlines(keepends=True)
    middle = len(lines) // 2
    line = lines[middle]
    lines[middle] = line[:10] + (b"A" if line[10:11] != b"A" else b"B") + line[11:]
    return b"".join(lines)


@pytest.fixture
def provider_key(programme: Programme) -> tuple[Path, str]:
    return agency_key(programme.work.parent, "provider")


@pytest.fixture
def referral_case(programme: Programme, provider_key: tuple[Path, str]) -> tuple[str, str]:
    """A case in implementation with consent to share for referral, a referral to the
    provider sharing the assessment, and a note whose canary must never leave."""
    set_directory(programme, {PROVIDER: entry(provider_key[1])})
    case_id = programme.walk("implementation")
    consent = recorded(programme, case_id, "consent", form("consent"))
    recorded(
        programme,
        case_id,
        "note",
        {"note": {**form("note")["note"], "text": "CANARY-NOTE-ONLY-5e6f"}},
    )
    referral = form("referral")
    referral["referral"].update(
        consent_ref=consent,
        information_shared=["assessment_summary"],
        referred_by="cw-north-1",
        status="pending",
    )
    for key in ("outcome", "feedback_received_on"):
        referral["referral"].pop(key)
    return case_id, recorded(programme, case_id, "referral", referral)


def test_a_referral_package_opens_for_the_provider_only_and_holds_only_the_consented_forms(
    programme: Programme, provider_key: tuple[Path, str], referral_case: tuple[str, str]
) -> None:
    case_id, referral_id = referral_case
    out = programme.work.parent / "outbox.age"
    packed = programme.cli("referral", "pack", case_id, referral_id, "-o", str(out))
    assert packed.exit_code == 0, packed.output
    package_id = re.search(r"PKG-[0-9A-Z]{8}", packed.stdout)[0]  # type: ignore[index]
    armored = out.read_text()
    with pytest.raises(NotARecipient):
        crypto.open_sealed(armored, programme.identities("pm-001"))
    plaintext = crypto.open_sealed(armored, crypto.load_identities(provider_key[0])).decode()
    assert case_id in plaintext and package_id in plaintext
    # Every canary of a form outside the package stays out; the assessment's are in.
    record = programme.repo().show(programme.identities("cw-north-1"), case_id)
    inside = {s for s in strings(record["assessment"]) if "CANARY" in s}
    assert inside and all(s in plaintext for s in inside)
    outside = {
        s
        for name, value in record.items()
        if name != "assessment"
        for s in strings(value)
        if "CANARY" in s and s not in inside
    }
    for marker in ("CANARY-NOTE-ONLY-5e6f", "CANARY-REASON-4c5d", "CANARY-NAME-7f3a"):
        assert any(marker in s for s in outside)
    assert [s for s in outside if s in plaintext] == []
    # The disclosure commit says "disclosure" and the package id; nothing else is open.
    message = programme.git("log", "-1", "--format=%B")
    assert f"{case_id}: disclosure {package_id}" in message
    assert "Cmgit-Event: " + package_id in message
    for secret in (PROVIDER, "assessment", referral_id, "referral"):
        assert secret not in message
    assert programme.git("status", "--porcelain") == ""
    logged = programme.cli("log", case_id, "--json", as_=None)
    assert logged.exit_code == 0, logged.output
    assert json.loads(logged.stdout)[-1]["action"] == "disclosure"
    assert PROVIDER not in logged.output
    assert programme.cli("stats", as_=None).exit_code == 0
    audit = programme.cli("audit", as_=None)
    assert audit.exit_code == 0, audit.output
    # The provider opens it and reads the code out; the sender records it as proof.
    opened = programme.cli("referral", "receive", str(out), "-i", str(provider_key[0]), as_=None)
    assert opened.exit_code == 0, opened.output
    code = CODE_RE.search(opened.stdout)[1]  # type: ignore[index]
    wrong = ("0" if code[0] != "0" else "1") + code[1:]
    doc = {
        "referral": programme.repo().show(programme.identities("cw-north-1"), case_id)["referral"][
            -1
        ]
    }
    path = programme.form_file("referral", doc)
    before = programme.state()
    guessed = programme.cli("record", case_id, "referral", "--from", path, "--receipt", wrong)
    assert guessed.exit_code == 4 and "receipt code matches no package" in guessed.output
    assert programme.state() == before
    proved = programme.cli("record", case_id, "referral", "--from", path, "--receipt", code)
    assert proved.exit_code == 0, proved.output
    kept = programme.repo().show(programme.identities("cw-north-1"), case_id)["disclosures"]
    assert kept[0]["receipt_confirmed_on"] == "2026-04-01"
    assert code.replace("-", "") not in str(kept)
    assert programme.cli("audit", as_=None).exit_code == 0


def test_another_agency_and_a_tampered_package_are_refused(
    programme: Programme, provider_key: tuple[Path, str], referral_case: tuple[str, str]
) -> None:
    case_id, referral_id = referral_case
    out = programme.work.parent / "outbox.age"
    assert programme.cli("referral", "pack", case_id, referral_id, "-o", str(out)).exit_code == 0
    other, _ = agency_key(programme.work.parent, "other-agency")
    wrong = programme.cli("referral", "receive", str(out), "-i", str(other), as_=None)
    assert wrong.exit_code == 5
    assert "not sealed to this agency's identity" in wrong.output
    tampered = programme.work.parent / "tampered.age"
    tampered.write_bytes(flip_one_character(out.read_bytes()))
    bad = programme.cli("referral", "receive", str(tampered), "-i", str(provider_key[0]), as_=None)
    assert bad.exit_code == 3
    assert "changed after it was packed" in bad.output
    assert "CANARY" not in wrong.output + bad.output


@pytest.mark.parametrize("problem", ["no_consent", "unknown_provider", "no_agreement"])
def test_no_consent_or_an_unknown_provider_is_refused_and_nothing_changes(
    programme: Programme,
    provider_key: tuple[Path, str],
    referral_case: tuple[str, str],
    problem: str,
) -> None:
    case_id, referral_id = referral_case
    if problem == "no_consent":
        consent = form("consent")
        consent["consent"]["scopes"] = ["registration_and_services"]
        other = recorded(programme, case_id, "consent", consent)
        referral = programme.repo().show(programme.identities("cw-north-1"), case_id)["referral"][
            -1
        ]
        recorded(
            programme,
            case_id,
            "referral",
            {"referral": {**referral, "consent_ref": other, "urgency": "urgent"}},
        )
    elif problem == "unknown_provider":
        set_directory(programme, {"PRV-OTHER": entry(provider_key[1])})
    else:
        set_directory(programme, {PROVIDER: entry(provider_key[1], in_force=False)})
    out = programme.work.parent / "outbox.age"
    before = programme.state()
    refused = programme.cli("referral", "pack", case_id, referral_id, "-o", str(out))
    assert refused.exit_code == 4, refused.output
    expected = "information_sharing_referral" if problem == "no_consent" else "G19p"
    assert expected in refused.output
    assert "CANARY" not in refused.output
    assert programme.state() == before
    assert not out.exists()
    assert list(out.parent.glob(".cmgit-package-*")) == []


def test_a_transfer_creates_the_case_in_the_receiving_programme_and_its_code_passes_g32(
    programme: Programme, tmp_path: Path
) -> None:
    receiving = build_programme(tmp_path / "agency-b")
    agency, recipient = agency_key(tmp_path, "agency-b")
    set_directory(programme, {RECEIVER: entry(recipient)})
    case_id = programme.walk("implementation")
    consent = form("consent")
    consent["consent"]["scopes"] = ["case_file_transfer"]
    consent_id = recorded(programme, case_id, "consent", consent)
    transfer = form("transfer")
    transfer["transfer"].update(consent_ref=consent_id, transferred_on="2026-03-30")
    transfer["transfer"].pop("receipt_confirmed_on")
    transfer["transfer"].pop("transfer_id", None)
    recorded(programme, case_id, "transfer", transfer)
    out = tmp_path / "transfer.age"
    packed = programme.cli("referral", "pack", case_id, "transfer", "-o", str(out))
    assert packed.exit_code == 0, packed.output
    # Sealed to another agency, or changed on the way: refused, and B is as it was.
    before = receiving.state()
    stranger, _ = agency_key(tmp_path, "stranger")
    assert receiving.cli("referral", "receive", str(out), "-i", str(stranger)).exit_code == 5
    tampered = tmp_path / "tampered.age"
    tampered.write_bytes(flip_one_character(out.read_bytes()))
    assert receiving.cli("referral", "receive", str(tampered), "-i", str(agency)).exit_code == 3
    assert receiving.state() == before
    # Programme B opens it with its agency identity; its caseworker makes the case.
    made = receiving.cli("referral", "receive", str(out), "-i", str(agency))
    assert made.exit_code == 0, made.output
    new_id = re.search(r"received as case (CP-[0-9A-Z]{8})", made.stdout)[1]  # type: ignore[index]
    code = CODE_RE.search(made.stdout)[1]  # type: ignore[index]
    assert new_id != case_id
    record = receiving.repo().show(receiving.identities("cw-north-1"), new_id)
    assert record["state"] == "identified"
    assert record["identification"]["identification_source"] == "transfer_in"
    got = record["received_package"]
    assert got["sender_case_id"] == case_id
    assert set(got["sections"]) == {"registration", "assessment", "case_plan"}
    assert case_id not in receiving.git("log", "--format=%B")
    assert receiving.cli("audit", as_=None).exit_code == 0
    # The same package received again makes no second case: refused, naming the first.
    before_again = receiving.state()
    again = receiving.cli("referral", "receive", str(out), "-i", str(agency))
    assert again.exit_code == 4 and new_id in again.output
    assert receiving.state() == before_again
    # Programme A: the receipt confirmed only with the code, then the closure passes G32.
    confirmed = {**transfer["transfer"], "receipt_confirmed_on": "2026-04-01"}
    path = programme.form_file("transfer", {"transfer": confirmed})
    before = programme.state()
    bare = programme.cli("record", case_id, "transfer", "--from", path)
    assert bare.exit_code == 4 and "receipt code" in bare.output
    assert programme.state() == before
    closing = programme.cli("move", case_id, "closed", "--reason", "transferred", as_="sv-north")
    assert closing.exit_code == 4 and "G32" in closing.output
    proved = programme.cli("record", case_id, "transfer", "--from", path, "--receipt", code)
    assert proved.exit_code == 0, proved.output
    closed = programme.cli("move", case_id, "closed", "--reason", "transferred", as_="sv-north")
    assert closed.exit_code == 0, closed.output
    assert programme.cli("audit", as_=None).exit_code == 0


def test_audit_flags_a_disclosure_out_of_scope_or_without_a_package_id(
    programme: Programme,
) -> None:
    case_id = programme.walk("implementation")
    path = ids.record_path(case_id)
    data = (programme.root / path).read_text()
    version = int(data.split("version: ", 1)[1].split("\n", 1)[0])
    forged = data.replace(f"version: {version}\n", f"version: {version + 1}\n")
    forge(
        programme,
        {path: forged.encode()},
        f"{case_id}: disclosure PKG-1",
        [
            ("Cmgit-Case", case_id),
            ("Cmgit-Action", "disclosure"),
            ("Cmgit-Event", "PKG-1"),
            ("Cmgit-Version", str(version + 1)),
            ("Cmgit-Date", "2026-04-01"),
            ("Cmgit-Actor", "cw-south-1"),
            ("Cmgit-Role", "caseworker"),
        ],
        "cw-south-1",
    )
    code, report = audit(programme)
    assert code == 6
    found = {(v["rule"], v["detail"]) for v in report["violations"]}
    assert ("message", "disclosure without a valid Cmgit-Event") in found
    assert any(rule == "scope" and "pack" in detail for rule, detail in found)


def test_the_directory_is_checked_when_committed_and_listed_keylessly(
    programme: Programme, provider_key: tuple[Path, str]
) -> None:
    broken = entry(provider_key[1])
    broken["information_sharing_agreement"] = {"in_force": "perhaps"}
    write_form(programme.root / "providers.yaml", {"providers": {PROVIDER: broken}})
    before = programme.git("rev-parse", "HEAD")
    refused = programme.cli("config", "commit", "-m", "service_directory", as_="pm-001")
    assert refused.exit_code == 3, refused.output
    assert "providers.yaml" in refused.output
    assert programme.git("rev-parse", "HEAD") == before
    programme.git("checkout", "--", "providers.yaml")
    set_directory(
        programme, {PROVIDER: entry(provider_key[1]), "PRV-OLD": entry(None, in_force=False)}
    )
    listed = programme.cli("referral", "providers", "--json", as_=None)
    assert listed.exit_code == 0, listed.output
    rows = {row["code"]: row for row in json.loads(listed.stdout)}
    assert rows[PROVIDER]["takes_packages"] and not rows["PRV-OLD"]["takes_packages"]
    from cmgit.site.directory import directory_page
    from cmgit.site.source import open_source

    source = open_source(programme.root, in_force=config_in_force)
    page = directory_page(source)
    assert "Red Cross tracing" in page and PROVIDER in page
    assert provider_key[1] not in page


def test_a_directory_committed_with_plain_git_is_not_packed_to(
    programme: Programme, provider_key: tuple[Path, str], referral_case: tuple[str, str]
) -> None:
    case_id, referral_id = referral_case
    _, recipient = agency_key(programme.work.parent, "intruder")
    write_form(programme.root / "providers.yaml", {"providers": {PROVIDER: entry(recipient)}})
    programme.git("-c", "user.name=cw-north-1", "-c", "user.email=x@x", "commit", "-qam", "x")
    out = programme.work.parent / "outbox.age"
    before = programme.state()
    refused = programme.cli("referral", "pack", case_id, referral_id, "-o", str(out))
    assert refused.exit_code == 6, refused.output
    assert "providers.yaml was last changed outside cmgit config commit" in refused.output
    assert programme.state() == before and not out.exists()
