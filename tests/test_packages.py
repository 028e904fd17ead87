"""The pure core of referral and transfer packages: what leaves a case, the service
directory's rule (G19p), the package format and the receipt code."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from cmgit import events, packages
from cmgit.errors import IntegrityError, Refused, UsageError

TODAY = dt.date(2026, 4, 1)
CONSENT = {
    "consent_id": "consent-1",
    "decision": "granted",
    "scopes": ["information_sharing_referral", "case_file_transfer"],
}


def case(**forms: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "consent": [CONSENT],
        "identification": {"initial_concern_summary": "CANARY-ID"},
        "registration": {"child": "CANARY-REG"},
        "assessment": [{"assessment_id": "assessment-1", "child_views": "CANARY-ASSESS"}],
        "case_plan": [{"plan_id": "plan-1"}],
        "note": [{"note_id": "note-1", "text": "CANARY-NOTE"}],
        "referral": [
            {
                "referral_id": "referral-1",
                "provider_id": "PRV-1",
                "consent_ref": "consent-1",
                "information_shared": ["assessment_summary", "medical"],
            }
        ],
    }
    base.update(forms)
    return base


def test_a_referral_carries_only_the_forms_its_information_shared_names() -> None:
    chosen = packages.select(case(), "referral-1")
    assert chosen.kind == "referral"
    assert chosen.provider_code == "PRV-1"
    assert list(chosen.sections) == ["assessment"]  # medical is no whole form


def test_every_information_shared_value_is_mapped_to_forms() -> None:
    import json
    from pathlib import Path

    schema = json.loads(
        (Path(__file__).parent.parent / "schemas/forms/referral.schema.json").read_text()
    )
    values = schema["properties"]["information_shared"]["items"]["enum"]
    assert set(values) == set(packages.SHARED_FORMS)


def test_a_transfer_carries_the_records_listed_and_never_a_system_form() -> None:
    transfer = {
        "transfer_id": "transfer-1",
        "receiving_agency": "PRV-2",
        "consent_ref": "consent-1",
        "records_transferred": ["registration", "note", "bid"],
    }
    chosen = packages.select(case(transfer=transfer, disclosures=[{"x": 1}]), "transfer")
    assert (chosen.kind, chosen.item_id, chosen.provider_code) == (
        "transfer",
        "transfer-1",
        "PRV-2",
    )
    assert list(chosen.sections) == ["registration", "note"]  # no bid recorded


@pytest.mark.parametrize(
    "consent",
    [
        [],
        [{**CONSENT, "decision": "withdrawn"}],
        [{**CONSENT, "scopes": ["registration_and_services"]}],
        [{**CONSENT, "consent_id": "consent-2"}],
    ],
)
def test_no_granted_consent_of_the_scope_named_is_refused(consent: list[Any]) -> None:
    with pytest.raises(Refused) as refused:
        packages.select(case(consent=consent), "referral-1")
    assert refused.value.exit_code == 4
    assert "information_sharing_referral" in refused.value.message


def test_a_cross_border_transfer_needs_consent_to_share_across_the_border() -> None:
    transfer = {
        "receiving_agency": "PRV-2",
        "consent_ref": "consent-1",
        "records_transferred": ["registration"],
        "cross_border": True,
    }
    with pytest.raises(Refused) as refused:
        packages.select(case(transfer=transfer), "transfer")
    assert "cross_border_information_sharing" in refused.value.message
    wider = {**CONSENT, "scopes": [*CONSENT["scopes"], "cross_border_information_sharing"]}  # type: ignore[list-item]
    assert packages.select(case(transfer=transfer, consent=[wider]), "transfer").sections


def test_an_unknown_item_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        packages.select(case(), "referral-9")


def provider(**agreement: Any) -> dict[str, packages.Provider]:
    return packages.directory(
        {
            "providers": {
                "PRV-1": {
                    "name": "Clinic",
                    "area": "North",
                    "services": ["medical_health"],
                    "package_recipient": "age1" + "q" * 58,
                    "information_sharing_agreement": agreement or {"in_force": True},
                }
            }
        }
    )


def test_g19p_knows_the_provider_and_its_agreement() -> None:
    assert packages.provider_for(provider(), "PRV-1", TODAY, refusal="r").code == "PRV-1"
    for directory, code in [
        (provider(), "PRV-9"),
        (provider(in_force=False), "PRV-1"),
        (provider(in_force=True, until="2026-03-31"), "PRV-1"),
    ]:
        with pytest.raises(Refused) as refused:
            packages.provider_for(directory, code, TODAY, refusal="what to do")
        assert "G19p" in str(refused.value)
        assert refused.value.problems == ["G19p: what to do"]


def test_the_package_document_round_trips_and_nothing_else_is_a_package() -> None:
    package = packages.Package(
        packages.new_package_id(bytes(5)), "referral", "CP-7K2M9QX4", TODAY, bytes(32), {"a": 1}
    )
    back = packages.from_document(package.document(), lambda c: c == "CP-7K2M9QX4")
    assert back == package
    for broken in (
        {**package.document(), "extra": 1},
        {**package.document(), "format": "cmgit-package 9"},
        {**package.document(), "secret": "zz" * 32},
        {**package.document(), "kind": "gift"},
        {**package.document(), "case_id": "../x"},
        ["not", "a", "mapping"],
    ):
        with pytest.raises(IntegrityError):
            packages.from_document(broken, lambda c: c == "CP-7K2M9QX4")


def test_the_receipt_code_is_keyed_and_the_sender_keeps_only_its_hash() -> None:
    code = packages.receipt_code(b"k" * 32, "PKG-00000000")
    assert len(code) == 19 and code.count("-") == 3
    assert code != packages.receipt_code(b"j" * 32, "PKG-00000000")
    assert code != packages.receipt_code(b"k" * 32, "PKG-00000001")
    kept = packages.code_hash(code)
    assert code.replace("-", "") not in kept
    # Typed as a person would: lower case, spaces, O for 0 and I or L for 1.
    typed = code.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    assert packages.code_matches(typed, [kept])
    guess = ("0" if code[0] != "0" else "1") + code[1:]
    assert not packages.code_matches(guess, [kept])
    with pytest.raises(UsageError):
        packages.code_hash("1234")


def test_the_received_tag_is_keyed_and_tells_nothing_of_the_receipt_code() -> None:
    tag = packages.received_tag(b"k" * 32, "PKG-00000000")
    assert len(tag) == 64 and tag == packages.received_tag(b"k" * 32, "PKG-00000000")
    assert tag != packages.received_tag(b"j" * 32, "PKG-00000000")
    assert tag != packages.received_tag(b"k" * 32, "PKG-00000001")
    code = packages.receipt_code(b"k" * 32, "PKG-00000000")
    assert tag != packages.code_hash(code) and code.replace("-", "").lower() not in tag


def test_event_kinds_have_one_shape() -> None:
    assert events.EXPORT.is_id(events.EXPORT.new_id(bytes(5)))
    assert events.DISCLOSE.new_id(bytes(5)) == "disclosure-00000000"
    assert events.PACKAGE.is_id(packages.new_package_id(b"\x01" * 5))
    assert not events.DISCLOSE.is_id("disclosure-0000000I")  # not a Crockford character
    assert not events.PACKAGE.is_id("PKG-1")
    assert {"Cmgit-Case", "Cmgit-Version"} <= events.DISCLOSE.trailers()
    assert "Cmgit-Case" not in events.EXPORT.trailers()
    assert events.details("export-00000000", count=3, reason="x") == [
        ("Cmgit-Event", "export-00000000"),
        ("Cmgit-Count", "3"),
        ("Cmgit-Reason", "x"),
    ]


def test_an_event_about_a_case_changes_its_record_one_version_on_and_nothing_else() -> None:
    path = "records/ab/CP-7K2M9QX4.yaml"
    trailer = {"Cmgit-Event": "disclosure-00000000", "Cmgit-Case": "CP-7K2M9QX4"}
    old = {"version": 3, "state": "registered", "team": "north", "caseworker": "cw-1"}
    ok = list(
        events.shape_problems(events.DISCLOSE, trailer, {path}, path, old, {**old, "version": 4})
    )
    assert ok == []
    moved = {**old, "version": 4, "state": "closed"}
    assert [
        r for r, _ in events.shape_problems(events.DISCLOSE, trailer, {path}, path, old, moved)
    ] == ["transition"]
    skipped = {**old, "version": 5}
    assert [
        r for r, _ in events.shape_problems(events.DISCLOSE, trailer, {path}, path, old, skipped)
    ] == ["version"]
    wide = {"Cmgit-Event": "export-00000000"}
    assert [r for r, _ in events.shape_problems(events.EXPORT, wide, {path}, None, None, None)] == [
        "paths"
    ]


def test_a_receipt_code_confirms_its_own_package_only() -> None:
    package = packages.Package("PKG-00000000", "transfer", "CP-7K2M9QX4", TODAY, b"s" * 32)
    chosen = packages.Selection("transfer", "transfer", "PRV-2", {})
    sent = [packages.disclosure(package, chosen, "cw-1")]
    assert "receipt_code" not in str(sent)
    marked, which = packages.confirm_receipt(
        sent, "transfer", "transfer", package.receipt_code, TODAY
    )
    assert which == "PKG-00000000"
    assert marked[0]["receipt_confirmed_on"] == "2026-04-01"
    other = packages.receipt_code(b"t" * 32, "PKG-00000000")
    with pytest.raises(Refused):
        packages.confirm_receipt(sent, "transfer", "transfer", other, TODAY)
    with pytest.raises(Refused):
        packages.confirm_receipt(sent, "referral", "transfer", package.receipt_code, TODAY)


def test_a_transfer_with_a_package_sent_confirms_receipt_only_with_its_code() -> None:
    package = packages.Package("PKG-00000000", "transfer", "CP-7K2M9QX4", TODAY, b"s" * 32)
    chosen = packages.Selection("transfer", "transfer", "PRV-2", {})
    before: dict[str, Any] = {
        "transfer": {"transferred_on": "2026-03-01"},
        "disclosures": [packages.disclosure(package, chosen, "cw-1")],
    }
    after = {
        **before,
        "transfer": {"transferred_on": "2026-03-01", "receipt_confirmed_on": "2026-04-01"},
    }
    with pytest.raises(Refused):
        packages.with_receipt(before, dict(after), "transfer", None, None, TODAY)
    done = packages.with_receipt(before, dict(after), "transfer", None, package.receipt_code, TODAY)
    assert done["disclosures"][0]["receipt_confirmed_on"] == "2026-04-01"
    # Without a package, a transfer handed over in person confirms receipt as before.
    plain = {"transfer": after["transfer"]}
    assert packages.with_receipt({}, plain, "transfer", None, None, TODAY) == plain
    with pytest.raises(UsageError):
        packages.with_receipt({}, {}, "note", None, package.receipt_code, TODAY)
