"""The monthly case report (domain 7.2, after Annex 5 of the agency practice review): pure
tables from values, no file, key, clock or process.

Two versions of one month at one commit:

- ``public``: from open fields and history only, tables of at most two dimensions,
  suppressed by ``cmgit.stats`` (the one place suppression lives), with the number of
  cases active in the month published once and every table over those cases kept
  consistent with it;
- ``internal``: full counts for the programme managers, with the three-dimensional
  Annex 5 table (concern category x sex x risk level) and the indicators read from
  sealed forms; the caller seals it.

One job a module: ``month`` (the month and the state histories read day by day),
``figures`` (the counts of the open fields, shared by both versions), ``public`` (the
published version), ``internal`` (the sealed forms' indicators and the full version).
Both versions are rendered as canonical JSON with no date but the month and no commit
but the one they were computed at, so a rebuild gives the same bytes.
"""

from __future__ import annotations

from .figures import REPORT_FIELDS, CaseMonth, Figure, case_month, open_figures, procedure
from .internal import SealedFacts, internal_report, sealed_facts, sealed_figures
from .month import Month
from .public import PublicReport, public_report, published

__all__ = [
    "REPORT_FIELDS",
    "CaseMonth",
    "Figure",
    "Month",
    "PublicReport",
    "SealedFacts",
    "case_month",
    "internal_report",
    "open_figures",
    "procedure",
    "public_report",
    "published",
    "sealed_facts",
    "sealed_figures",
]
