"""Referral and transfer packages, pure: which forms of a case leave it, the service
directory they go to, the package's own format and its receipt code.

A package is one age file sealed to the receiving agency. Its plaintext is a small YAML
document: the package id, what it is (a referral or a transfer), the sending case's ID,
a random secret, and the sections, each one top-level form of the case, exactly as
recorded. Nothing else of the case goes in: the sections come from the table below
(for a referral) or from the transfer form's list, and only with the consent the item
names.

The receipt code proves the package was opened: it is a keyed hash (HMAC-SHA256) of
the package id under the secret inside the package, so only someone who decrypted it
can compute it. The sender keeps a hash of the code, never the code, so its record
cannot give the proof away either.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import IntegrityError, Refused, UsageError
from .guards import consent_granted, to_date
from .ids import CROCKFORD

FORMAT = "cmgit-package 1"
REFERRAL = "referral"
TRANSFER = "transfer"
KINDS = (REFERRAL, TRANSFER)
PROVIDER_GUARD = "G19p"  # the receiving agency is in the directory, with an agreement
PACKAGE_PREFIX = "PKG-"
SECRET_BYTES = 32
CODE_CHARS = 16  # 80 bits: a typed guess has one chance in 2**80
CODE_GROUP = 4

# What each `information_shared` value of a referral puts in its package, as whole
# forms. A value that no single form holds alone (medical, legal details are spread over
# assessments and notes) adds no form: sharing a whole form for it would share more than
# the consent covers, so the caseworker passes such details by other means.
SHARED_FORMS: dict[str, tuple[str, ...]] = {
    "registration_basic": ("registration",),
    "assessment_summary": ("assessment",),
    "medical": (),
    "legal": (),
    "plan_extract": ("case_plan",),
}
# The consent scope each kind of package needs, named by the item's consent_ref.
CONSENT_SCOPE = {REFERRAL: "information_sharing_referral", TRANSFER: "case_file_transfer"}
CROSS_BORDER_SCOPE = "cross_border_information_sharing"  # and for a cross-border transfer
# Forms only cmgit writes (earlier episodes, disclosures, a received package): they are
# never a section, whatever a transfer form lists.
SYSTEM_FORMS = frozenset({"previous_episodes", "disclosures", "received_package"})


# -- the service directory -------------------------------------------------------------


@dataclass(frozen=True)
class Provider:
    """One agency of the service directory (providers.yaml)."""

    code: str
    name: str
    area: str
    services: tuple[str, ...]
    recipient: str | None
    agreement_in_force: bool
    agreement_until: dt.date | None = None

    def agreement_holds(self, today: dt.date) -> bool:
        if not self.agreement_in_force:
            return False
        return self.agreement_until is None or today <= self.agreement_until


def directory(doc: Mapping[str, Any] | None) -> dict[str, Provider]:
    """The providers of a providers.yaml document (already checked by its schema)."""
    found: dict[str, Provider] = {}
    for code, entry in ((doc or {}).get("providers") or {}).items():
        agreement = entry.get("information_sharing_agreement") or {}
        found[code] = Provider(
            code=code,
            name=entry["name"],
            area=entry["area"],
            services=tuple(entry.get("services") or ()),
            recipient=entry.get("package_recipient"),
            agreement_in_force=bool(agreement.get("in_force")),
            agreement_until=to_date(agreement.get("until")),
        )
    return found


def provider_for(
    providers: Mapping[str, Provider], code: Any, today: dt.date, *, refusal: str
) -> Provider:
    """The provider a package goes to; Refused (guard G19p) if the directory does not
    know it, or no information-sharing agreement with it is in force, or it has no
    recipient for packages."""
    provider = providers.get(code) if isinstance(code, str) else None
    if provider is None:
        why = "the provider is not in the service directory (providers.yaml)"
    elif not provider.agreement_holds(today):
        why = "no information-sharing agreement with the provider is in force"
    elif provider.recipient is None:
        why = "the service directory names no recipient for the provider's packages"
    else:
        return provider
    raise Refused(f"refused by {PROVIDER_GUARD}: {why}", problems=[f"{PROVIDER_GUARD}: {refusal}"])


# -- what leaves the case --------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """What a package of one referral or transfer carries, and to whom."""

    kind: str
    item_id: str
    provider_code: str
    sections: dict[str, Any]


def find_item(forms: Mapping[str, Any], item: str) -> tuple[str, Mapping[str, Any]]:
    """The referral (by referral_id) or the transfer (by transfer_id, or the word
    "transfer") the package is made for, with its kind."""
    transfer = forms.get(TRANSFER)
    if isinstance(transfer, Mapping) and item in (TRANSFER, transfer.get("transfer_id")):
        return TRANSFER, transfer
    for referral in forms.get(REFERRAL) or ():
        if referral.get("referral_id") == item:
            return REFERRAL, referral
    raise UsageError(
        "the case has no referral or transfer of that id",
        hint="see the ids with cmgit show ID; a transfer is named transfer",
    )


def section_names(kind: str, item: Mapping[str, Any]) -> list[str]:
    """The forms a referral's information_shared, or a transfer's records_transferred,
    cover, in a stable order."""
    if kind == REFERRAL:
        names = [f for value in item.get("information_shared") or () for f in SHARED_FORMS[value]]
    else:
        names = [str(name) for name in item.get("records_transferred") or ()]
    return [name for name in dict.fromkeys(names) if name not in SYSTEM_FORMS]


def select(forms: Mapping[str, Any], item: str) -> Selection:
    """The sections of a package for ``item``: only the forms its list covers, and only
    with granted consent of the right scope named by its consent_ref (Refused, exit 4,
    without)."""
    kind, entry = find_item(forms, item)
    consent_ref = entry.get("consent_ref")
    scopes = [CONSENT_SCOPE[kind]]
    if kind == TRANSFER and entry.get("cross_border"):
        scopes.append(CROSS_BORDER_SCOPE)
    for scope in scopes:
        if consent_ref is None or not consent_granted(forms, scope, consent_ref):
            raise Refused(
                f"refused: no granted consent to {scope} is named by the {kind}'s consent_ref",
                hint=f"record the consent, name it in the {kind} "
                f"(cmgit record ID {kind} --from FILE)",
            )
    sections = {name: forms[name] for name in section_names(kind, entry) if name in forms}
    code = entry.get("provider_id") if kind == REFERRAL else entry.get("receiving_agency")
    item_id = str(entry.get("referral_id") or entry.get("transfer_id") or TRANSFER)
    return Selection(kind, item_id, str(code), sections)


# -- the package -----------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    """A package's plaintext: what the receiving agency reads."""

    package_id: str
    kind: str
    case_id: str
    packed_on: dt.date
    secret: bytes
    sections: dict[str, Any] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "package_id": self.package_id,
            "kind": self.kind,
            "case_id": self.case_id,
            "packed_on": self.packed_on.isoformat(),
            "secret": self.secret.hex(),
            "sections": self.sections,
        }

    @property
    def receipt_code(self) -> str:
        return receipt_code(self.secret, self.package_id)


# The trailer of the `new` commit of a case a transfer package created: a keyed hash only
# a holder of the package computes, so a second receipt is found without a key, and a
# keyless reader learns nothing of the package from it.
RECEIVED_TRAILER = "Cmgit-Received"
_RECEIVED_LABEL = b"cmgit transfer received "


def received_tag(secret: bytes, package_id: str) -> str:
    """HMAC-SHA256 of a fixed label and the package id under the package's secret (hex):
    a different key use from the receipt code, which the sender holds the hash of."""
    return hmac.new(
        secret, _RECEIVED_LABEL + package_id.encode("ascii"), hashlib.sha256
    ).hexdigest()


def new_package_id(entropy: bytes) -> str:
    return PACKAGE_PREFIX + crockford(entropy, 8)


def is_package_id(text: Any) -> bool:
    return (
        isinstance(text, str)
        and len(text) == len(PACKAGE_PREFIX) + 8
        and text.startswith(PACKAGE_PREFIX)
        and all(c in CROCKFORD for c in text[len(PACKAGE_PREFIX) :])
    )


def from_document(doc: Any, case_id_ok: Any) -> Package:
    """A package from its decrypted document; IntegrityError unless it has exactly the
    shape cmgit writes (``case_id_ok`` checks the sender's case ID)."""
    keys = {"format", "package_id", "kind", "case_id", "packed_on", "secret", "sections"}
    if not isinstance(doc, Mapping) or set(doc) != keys or doc["format"] != FORMAT:
        raise not_a_package()
    secret = doc["secret"]
    packed_on = to_date(doc["packed_on"])
    if (
        not is_package_id(doc["package_id"])
        or doc["kind"] not in KINDS
        or not case_id_ok(doc["case_id"])
        or packed_on is None
        or not isinstance(secret, str)
        or len(secret) != 2 * SECRET_BYTES
        or not isinstance(doc["sections"], Mapping)
    ):
        raise not_a_package()
    try:
        secret_bytes = bytes.fromhex(secret)
    except ValueError:
        raise not_a_package() from None
    return Package(
        str(doc["package_id"]),
        str(doc["kind"]),
        str(doc["case_id"]),
        packed_on,
        secret_bytes,
        dict(doc["sections"]),
    )


def not_a_package() -> IntegrityError:
    return IntegrityError(
        "the file is not a cmgit referral or transfer package",
        hint="ask the sending agency to pack it again with cmgit referral pack",
    )


# -- the receipt code ------------------------------------------------------------------


def crockford(data: bytes, chars: int) -> str:
    number = int.from_bytes(data, "big")
    out = []
    for _ in range(chars):
        number, digit = divmod(number, 32)
        out.append(CROCKFORD[digit])
    return "".join(reversed(out))


def receipt_code(secret: bytes, package_id: str) -> str:
    """HMAC-SHA256 of the package id under the package's secret: 16 Crockford characters
    in groups of four, for reading over a telephone."""
    digest = hmac.new(secret, package_id.encode("ascii"), hashlib.sha256).digest()
    code = crockford(digest[:10], CODE_CHARS)
    return "-".join(code[i : i + CODE_GROUP] for i in range(0, CODE_CHARS, CODE_GROUP))


_READ_AS = str.maketrans({"I": "1", "L": "1", "O": "0"})


def normalise_code(text: str) -> str | None:
    """A receipt code as typed (any case, with or without hyphens and spaces, I/L for 1,
    O for 0, as Crockford allows), or None if it cannot be one."""
    plain = "".join(text.split()).replace("-", "").upper().translate(_READ_AS)
    if len(plain) != CODE_CHARS or any(c not in CROCKFORD for c in plain):
        return None
    return plain


def code_hash(code: str) -> str:
    """What the sender keeps: the SHA-256 of the normalised code, never the code."""
    plain = normalise_code(code)
    if plain is None:
        raise UsageError("that is not a receipt code (16 characters, e.g. 7K2M-9QX4-...)")
    return hashlib.sha256(plain.encode("ascii")).hexdigest()


def code_matches(code: str, hashes: Iterable[str]) -> bool:
    wanted = code_hash(code)
    return any(hmac.compare_digest(wanted, kept) for kept in hashes)


# -- the sender's record of what left ----------------------------------------------------


def disclosure(package: Package, selection: Selection, packed_by: str) -> dict[str, Any]:
    """The sealed entry the sending case keeps of one package: the provider, the sections
    and the hash of the receipt code, all inside the sealed block."""
    return {
        "package_id": package.package_id,
        "kind": selection.kind,
        "item_id": selection.item_id,
        "provider_id": selection.provider_code,
        "sections": list(selection.sections),
        "packed_on": package.packed_on.isoformat(),
        "packed_by": packed_by,
        "receipt_hash": code_hash(package.receipt_code),
    }


def confirm_receipt(
    disclosures: Sequence[Mapping[str, Any]], kind: str, item_id: str, code: str, today: dt.date
) -> tuple[list[dict[str, Any]], str]:
    """The disclosures with the one whose receipt ``code`` proves marked as confirmed on
    ``today``, and its package id; Refused if the code matches no package of the item."""
    wanted = code_hash(code)
    changed: list[dict[str, Any]] = []
    confirmed = None
    for entry in disclosures:
        entry = dict(entry)
        if (
            confirmed is None
            and entry.get("kind") == kind
            and entry.get("item_id") == item_id
            and hmac.compare_digest(wanted, str(entry.get("receipt_hash", "")))
        ):
            entry.setdefault("receipt_confirmed_on", today.isoformat())
            confirmed = str(entry["package_id"])
        changed.append(entry)
    if confirmed is None:
        raise Refused(
            f"refused: the receipt code matches no package sent for this {kind}",
            hint="check the code with the receiving agency; a typed guess never matches",
        )
    return changed, confirmed


def with_receipt(
    before: Mapping[str, Any],
    after: dict[str, Any],
    form: str,
    item_id: str | None,
    code: str | None,
    today: dt.date,
) -> dict[str, Any]:
    """The forms of a case after recording ``form``, with the receipt ``code`` applied:
    the package of the item it proves is marked as received. Once a package was sent for
    a transfer, its receipt_confirmed_on is recorded only with the receipt code (Refused
    without), so G32 rests on proof that the receiving agency opened it."""
    if form not in KINDS:
        if code is not None:
            raise UsageError("a receipt code is recorded with a referral or a transfer form")
        return after
    key = TRANSFER if form == TRANSFER else item_id or ""
    sent = [
        d
        for d in after.get("disclosures") or ()
        if (d.get("kind"), d.get("item_id")) == (form, key)
    ]
    if code is None:
        newly = (after.get(TRANSFER) or {}).get("receipt_confirmed_on")
        if (
            form == TRANSFER
            and sent
            and newly
            and newly != (before.get(TRANSFER) or {}).get("receipt_confirmed_on")
        ):
            raise Refused(
                "refused: a package was sent for this transfer, so its receipt is confirmed "
                "with the receipt code the receiving agency gives",
                hint="record the transfer again with --receipt CODE",
            )
        return after
    disclosures, _ = confirm_receipt(after.get("disclosures") or (), form, key, code, today)
    return {**after, "disclosures": disclosures}
