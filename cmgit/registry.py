"""Staff registry and programme settings: who works here, and who may read which case.

Pure: documents in, answers out. The store reads and writes the YAML files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from typing import Any

from .errors import Refused, UnknownActor, UsageError

ROLES = ("caseworker", "supervisor", "programme_manager", "coordinator", "auditor")
CASEWORKER, SUPERVISOR, PROGRAMME_MANAGER, COORDINATOR, AUDITOR = ROLES


@dataclass(frozen=True)
class Staff:
    id: str
    role: str
    team: str
    recipient: str
    signing_key: str | None
    active: bool
    # Signing keys of this person's known to be compromised, each with the day from which
    # a commit it signed is not theirs: (public key, YYYY-MM-DD). Kept after the key is
    # replaced, so history signed with it after that day stays flagged.
    compromised_keys: tuple[tuple[str, str], ...] = ()

    def as_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        del doc["id"]
        if self.compromised_keys:
            doc["compromised_keys"] = [
                {"signing_key": key, "since": since} for key, since in self.compromised_keys
            ]
        else:
            del doc["compromised_keys"]  # registries without any stay as they were
        return doc

    @classmethod
    def from_doc(cls, staff_id: str, fields: Mapping[str, Any]) -> Staff:
        compromised = tuple(
            (entry["signing_key"], str(entry["since"]))
            for entry in fields.get("compromised_keys", ())
        )
        rest = {k: v for k, v in fields.items() if k != "compromised_keys"}
        return cls(id=staff_id, **rest, compromised_keys=compromised)


class Registry:
    """The staff registry (``staff.yaml``), kept in the order people were added."""

    def __init__(self, staff: Iterable[Staff]):
        self.staff = {member.id: member for member in staff}
        self._recipients: dict[tuple[str, str | None, str], list[str]] = {}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Registry:
        return cls(Staff.from_doc(sid, fields) for sid, fields in doc["staff"].items())

    def to_doc(self) -> dict[str, Any]:
        return {"staff": {sid: member.as_doc() for sid, member in self.staff.items()}}

    @cached_property
    def compromised_keys(self) -> dict[str, str]:
        """Each signing key marked compromised, with the first day (YYYY-MM-DD) from which
        a commit it signed is a violation."""
        found: dict[str, str] = {}
        for member in self.staff.values():
            for key, since in member.compromised_keys:
                found[key] = min(since, found.get(key, since))
        return found

    def get(self, staff_id: str) -> Staff:
        try:
            return self.staff[staff_id]
        except KeyError:
            raise UsageError(f"no staff member {staff_id}", hint="see cmgit staff list") from None

    def active(self, role: str | None = None, team: str | None = None) -> list[Staff]:
        return [
            m
            for m in self.staff.values()
            if m.active and (role is None or m.role == role) and (team is None or m.team == team)
        ]

    def with_member(self, member: Staff) -> Registry:
        staff = dict(self.staff)
        staff[member.id] = member
        return Registry(staff.values())

    def updated(self, staff_id: str, **changes: Any) -> Registry:
        return self.with_member(replace(self.get(staff_id), **changes))

    def with_key_compromised(self, staff_id: str, since: str) -> Registry:
        """The registry with ``staff_id``'s signing key marked compromised from ``since``
        (YYYY-MM-DD) and no longer theirs: they sign again once a new key is registered."""
        member = self.get(staff_id)
        if member.signing_key is None:
            raise UsageError(f"{staff_id} has no signing key to mark compromised")
        marked = (*member.compromised_keys, (member.signing_key, since))
        return self.updated(staff_id, signing_key=None, compromised_keys=marked)

    def actor_for(self, recipients: Iterable[str]) -> Staff:
        """The one active staff member whose recipient is among the identity's keys."""
        keys = set(recipients)
        matches = [m for m in self.staff.values() if m.recipient in keys]
        active = [m for m in matches if m.active]
        if len(active) == 1:
            return active[0]
        if len(active) > 1:
            raise UnknownActor(
                "identity matches several staff members",
                hint="use an identity file holding one person's key",
            )
        if matches:
            raise UnknownActor(
                f"staff member {matches[0].id} is deactivated",
                hint="ask a programme manager",
            )
        raise UnknownActor(
            "identity matches no staff member of this repository",
            hint="check CMGIT_IDENTITY, or ask a programme manager to register your recipient",
        )

    def check_role(self, actor: Staff, *roles: str, action: str) -> None:
        if actor.role not in roles:
            raise Refused(
                f"{action} needs the role {' or '.join(roles)}; {actor.id} is {actor.role}",
                hint="ask someone with that role",
            )

    def recipients_for(
        self, team: str, caseworker: str | None, settings: Mapping[str, Any]
    ) -> list[str]:
        """Who can open a case (SPEC section 2): caseworker, team supervisors, programme
        managers, the team's members in reader roles, and the recovery recipients.
        Auditors never."""
        # Asked once a record in bulk reads: remembered per team, caseworker and settings.
        key = (
            team,
            caseworker,
            repr(sorted(settings.get("reader_roles", ())))
            + repr(sorted(settings.get("recovery_recipients", ()))),
        )
        if key not in self._recipients:
            self._recipients[key] = self._recipients_for(team, caseworker, settings)
        return list(self._recipients[key])

    def _recipients_for(
        self, team: str, caseworker: str | None, settings: Mapping[str, Any]
    ) -> list[str]:
        readers = set(settings.get("reader_roles", ())) - {AUDITOR}
        chosen: set[str] = set(settings.get("recovery_recipients", ()))
        for member in self.active():
            if (
                member.id == caseworker
                or member.role == PROGRAMME_MANAGER
                or (member.team == team and (member.role == SUPERVISOR or member.role in readers))
            ) and member.role != AUDITOR:
                chosen.add(member.recipient)
        return sorted(chosen)


def settings_defaults(settings_schema: Mapping[str, Any]) -> dict[str, Any]:
    """A new programme's settings: every ``default`` the settings schema declares."""
    out: dict[str, Any] = {}
    for key, prop in settings_schema["properties"].items():
        if "default" in prop:
            out[key] = prop["default"]
        elif prop.get("type") == "object" and "properties" in prop:
            out[key] = {k: v["default"] for k, v in prop["properties"].items() if "default" in v}
    return out
