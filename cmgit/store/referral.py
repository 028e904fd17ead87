"""Referral and transfer packages: pack one for a provider of the service directory,
with the disclosure committed on the case; open one received from another agency.

What goes in a package, its format and its receipt code are `cmgit.packages` (pure);
this module reads the directory and the case, seals, writes and commits.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import crypto, events, ids, packages, workflow, yamlio
from ..config import MAX_CONFIG_BYTES, PROVIDERS_FILE, load_yaml
from ..errors import (
    CmgitError,
    IntegrityError,
    NotARecipient,
    Refused,
    RepositoryError,
    UsageError,
)
from ..history import new_temp_file
from ..packages import Package, Provider
from ..registry import CASEWORKER, PROGRAMME_MANAGER
from ..schema import PROVIDERS
from . import unit
from .cases import create_case
from .core import Core
from .setup import read_limited

MAX_PACKAGE_BYTES = 16 * 1024 * 1024
DISCLOSURES = events.DISCLOSURES
RECEIVED = "received_package"
# The concern a transferred case is identified with: the sender's forms tell the rest.
TRANSFERRED_IN = "Transferred in from another agency: see the package received."


@dataclass
class Packed:
    case_id: str
    package_id: str
    kind: str
    sections: list[str]


@dataclass
class Received:
    package: Package
    case_id: str | None  # the case a transfer created here; None for a referral


def directory(repo: Core) -> dict[str, Provider]:
    """The service directory as committed at HEAD, checked against its schema."""
    if PROVIDERS not in repo.schemas.schemas:
        raise RepositoryError(
            "this repository's schemas have no service directory yet",
            hint="run cmgit migrate to bring the template's providers schema",
        )
    oid = repo.git.blob_id("HEAD", PROVIDERS_FILE)
    if oid is None:
        return {}
    _check_directory_change(repo)
    data = repo.git.read_blob(oid, limit=MAX_CONFIG_BYTES)
    schema = repo.schemas.schemas[PROVIDERS]
    doc = load_yaml(data, repo.schemas, schema, what=PROVIDERS_FILE, limit=MAX_CONFIG_BYTES)
    repo.schemas.validate(doc, PROVIDERS, what=PROVIDERS_FILE)
    return packages.directory(doc)


def _check_directory_change(repo: Core) -> None:
    """Refuse a directory whose last change cmgit did not make for a programme manager:
    a recipient slipped in with plain git would receive children's information. (Audit
    and the server hook judge the change in full; this keeps a local clone from packing
    to it before they do.)"""
    last = repo.git.log(PROVIDERS_FILE)[-1]
    member = repo.registry.staff.get(last.trailer("Cmgit-Actor") or "")
    if (
        last.trailer("Cmgit-Action") not in ("init", "config")
        or member is None
        or member.role != PROGRAMME_MANAGER
        or last.author != member.id
    ):
        raise RepositoryError(
            f"{PROVIDERS_FILE} was last changed outside cmgit config commit by a "
            "programme manager; no package is made to it",
            hint="run cmgit audit; a programme manager commits the directory again",
        )


def pack(
    repo: Core,
    identities: Sequence[crypto.Identity],
    case_id: str,
    item: str,
    output: Path,
    *,
    today: dt.date,
    entropy: Callable[[int], bytes] = os.urandom,
) -> Packed:
    """Write one package for a referral or the transfer of a case, sealed to the provider,
    and commit the disclosure on the case. Refused without consent (exit 4), for a
    provider outside the directory or without an agreement (G19p), by role and scope as
    recording the referral or transfer is."""
    repo.check_config_trusted()
    actor = repo.actor(identities)
    _check_output(repo, output)
    unit.precheck_clean(repo, ids.record_path(case_id))
    loaded = repo.load(case_id, identities)
    record = loaded.record
    workflow.refuse_if_closed(record.open["state"], case_id)
    try:
        selection = packages.select(record.forms, item)
        event = repo.workflow.events[selection.kind]
        denied = repo.workflow.permission(
            event.by, actor.role, actor.id, actor.team, record.open, f"packing a {selection.kind}"
        )
        if denied or record.open["state"] not in event.states:
            raise Refused(f"refused: {denied or f'a {selection.kind} is not packed in this state'}")
        guard = repo.workflow.guards.get(packages.PROVIDER_GUARD)
        provider = packages.provider_for(
            directory(repo),
            selection.provider_code,
            today,
            refusal=(guard.refusal or guard.summary) if guard else "see the service directory",
        )
    except CmgitError as exc:
        exc.case_id = case_id
        raise
    assert provider.recipient is not None
    package = Package(
        packages.new_package_id(entropy(5)),
        selection.kind,
        case_id,
        today,
        entropy(packages.SECRET_BYTES),
        selection.sections,
    )
    plaintext = yamlio.dump(package.document()).encode("utf-8")
    sealed = repo.cipher.seal(plaintext, [provider.recipient])
    entry = packages.disclosure(package, selection, actor.id)
    record.forms[DISCLOSURES] = [*(record.forms.get(DISCLOSURES) or ()), entry]
    fd, temp = new_temp_file(output.parent, ".cmgit-package-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(sealed.encode("ascii"))
            handle.flush()
            os.fsync(handle.fileno())
        unit.save(
            repo,
            loaded,
            actor,
            today,
            events.PACKAGE.action,
            None,
            events.details(package.package_id),
        )
        os.replace(temp, output)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    return Packed(case_id, package.package_id, selection.kind, list(selection.sections))


def _check_output(repo: Core, output: Path) -> None:
    """A package is written beside the repository, never into it (it would be committed
    by the next git add), and never over another file."""
    where = output.resolve()
    if where == repo.root.resolve() or repo.root.resolve() in where.parents:
        raise UsageError(
            "a package is not written inside the case repository",
            hint="name a file outside it with -o",
        )
    if output.exists() or output.is_symlink():
        raise UsageError("the output file exists already", hint="name a new file with -o")
    if not output.parent.is_dir():
        raise UsageError("the output folder does not exist", hint="create it or name another")


def open_package(path: Path, agency: Sequence[crypto.Identity]) -> Package:
    """A package decrypted with the agency's identity and checked to be one cmgit made:
    NotARecipient (exit 5) if it is sealed to another agency, IntegrityError (exit 3) if
    it was changed after it was packed or is no package at all."""
    try:
        data = read_limited(path, MAX_PACKAGE_BYTES, "package")
    except OSError:
        raise UsageError("cannot read the package file", hint="check the path") from None
    try:
        armored = data.decode("ascii")
        plaintext = crypto.open_sealed(armored, agency)
    except UnicodeDecodeError:
        raise packages.not_a_package() from None
    except NotARecipient:
        raise NotARecipient(
            "the package is not sealed to this agency's identity (meant for another agency)",
            hint="open it with the identity of the agency it was sent to (-i FILE)",
        ) from None
    except IntegrityError:
        raise IntegrityError(
            "the package was changed after it was packed (tampered with or damaged)",
            hint="ask the sending agency to pack it again",
        ) from None
    try:
        doc = yamlio.load(plaintext, what="package", max_bytes=MAX_PACKAGE_BYTES)
    except CmgitError:
        raise packages.not_a_package() from None
    return packages.from_document(
        doc, lambda text: isinstance(text, str) and bool(ids.CASE_ID_RE.fullmatch(text))
    )


def receive_transfer(
    repo: Core,
    identities: Sequence[crypto.Identity],
    package: Package,
    *,
    today: dt.date,
    caseworker: str | None = None,
) -> str:
    """A case of this programme, under its own case ID, for a transfer package: in the
    first state (fresh consent is still needed to register it), identified as
    transferred in, with the package's sections and the sender's case ID sealed in it."""
    if package.kind != packages.TRANSFER:
        raise UsageError("a referral package makes no case here; it gives a receipt code")
    repo.check_config_trusted()
    tag = packages.received_tag(package.secret, package.package_id)
    existing = received_as(repo, tag)
    if existing is not None:
        raise Refused(
            f"refused: this transfer package was received already, as case {existing}",
            hint=f"work on {existing}; a package makes one case",
            case_id=existing,
        )
    actor = repo.actor(identities)
    if caseworker is None and actor.role != CASEWORKER:
        raise UsageError("name the key caseworker of the new case with --caseworker ID")
    if any(name not in repo.schemas.editable_fields for name in package.sections):
        raise IntegrityError(
            "the package holds sections this programme's schemas do not know",
            hint="ask the sending agency which cmgit version packed it",
        )
    # Typed as the forms' schemas say, as a form file is: what was a string stays one.
    sections = {
        name: repo.schemas.coerce(value, repo.schemas.case_properties[name], what="package")
        for name, value in package.sections.items()
    }
    forms: dict[str, Any] = {
        "identification": {
            "identified_on": today.isoformat(),
            "identified_by": actor.id,
            "identification_source": "transfer_in",
            "initial_concern_summary": TRANSFERRED_IN,
            "urgent_needs": False,
        },
        RECEIVED: {
            "package_id": package.package_id,
            "sender_case_id": package.case_id,
            "packed_on": package.packed_on.isoformat(),
            "received_on": today.isoformat(),
            "sections": sections,
        },
    }
    return create_case(repo, actor, forms, today=today, caseworker=caseworker, received=tag)


def received_as(repo: Core, tag: str) -> str | None:
    """The case a transfer package with this received tag created here, if any: read
    from the `new` commits' trailers, keylessly."""
    if repo.git.head() is None:
        return None
    found = repo.git.text(
        "log",
        "-1",
        "--format=%(trailers:key=Cmgit-Case,valueonly)",
        "--fixed-strings",
        f"--grep={packages.RECEIVED_TRAILER}: {tag}",
        "HEAD",
    ).strip()
    return found or None
