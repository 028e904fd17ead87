"""The internal monthly report: every case opened with a programme manager's identity,
the month's full counts and the indicators of the sealed forms, sealed to the programme
managers of the registry. Reading only: nothing is committed.

The figures are canonical JSON (``cmgit.reports``); age seals them afresh each time, so
a rebuild at the same commit decrypts to the same bytes, never to the same ciphertext.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import crypto, reports
from ..errors import CmgitError, NotACaseRepository
from ..progress import SILENT, Progress
from ..registry import PROGRAMME_MANAGER
from ..reports import CaseMonth, Month, SealedFacts
from ..stats import Programme as Procedure
from . import bulk
from .core import Committed, Core

ACTION = "the internal monthly report"


@dataclass(frozen=True)
class InternalReport:
    month: Month
    commit: str
    armored: str
    active: int
    unreadable: int
    recipients: int


def internal_monthly(
    repo: Core,
    identities: Sequence[crypto.Identity],
    month: Month,
    progress: Progress = SILENT,
) -> InternalReport:
    """The month's internal report at HEAD, sealed to the active programme managers;
    refused (exit 4) to anyone else, who may write the public version instead."""
    repo.acting(identities, PROGRAMME_MANAGER, action=ACTION)
    head = repo.git.head()
    if head is None:
        raise NotACaseRepository("the repository has no commits yet")
    procedure = reports.procedure(
        repo.workflow,
        repo.schemas.resolve("urn:cmgit:schema:common#/$defs/closure_reason").get("enum", ()),
        repo.settings,
        (),
        next(iter(repo.workflow.profiles)),
    )
    months = int(repo.settings.get("post_closure_monitoring_months", 3))
    committed = repo.committed_records()
    found = bulk.in_pool(
        repo.git,
        lambda case_id, entry: _case(repo, case_id, entry, identities, procedure, month, months),
        sorted(committed),
        committed,
        "Reading cases",
        progress,
    )
    readable = [pair for pair in found if pair is not None]
    active, figures = reports.open_figures([c for c, _ in readable], procedure, internal=True)
    plaintext = reports.internal_report(
        month,
        head,
        str(repo.settings.get("programme_name", "")),
        active,
        [*figures, *reports.sealed_figures(readable)],
        len(found) - len(readable),
    )
    recipients = sorted(m.recipient for m in repo.registry.active(PROGRAMME_MANAGER))
    return InternalReport(
        month,
        head,
        repo.cipher.seal(plaintext, recipients),
        active,
        len(found) - len(readable),
        len(recipients),
    )


def _case(
    repo: Core,
    case_id: str,
    committed: Committed,
    identities: Sequence[crypto.Identity],
    procedure: Procedure,
    month: Month,
    monitoring_months: int,
) -> tuple[CaseMonth, SealedFacts] | None:
    """What one case adds to the month, or None if it cannot be opened and checked (the
    report counts those, and `cmgit validate` says why)."""
    try:
        loaded = repo.load(case_id, identities, committed)
    except CmgitError:
        return None
    record = loaded.record
    return (
        reports.case_month(record.open, procedure, month, monitoring_months),
        reports.sealed_facts(record.forms, month),
    )


def write_files(out: Path, files: Mapping[str, bytes]) -> list[Path]:
    """Write each file into ``out`` (made if missing) through a temporary file and a
    rename, so that a reader never sees half a report."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in files.items():
        target = out / name
        fd, temporary = tempfile.mkstemp(prefix=".cmgit-report-", dir=out)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        written.append(target)
    return written
