"""The public monthly report of a commit, computed from the open fields and history
alone, and its page on the site.

`cmgit report monthly` writes the same report as a file; the site publishes the latest
month that has ended before the day of the build (a fixed schedule, domain 7.4: one
release a month limits what comparing two releases tells).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from .. import reports, stats
from ..reports import Month, PublicReport
from ..reports.public import PERCENT_OF
from .markup import code, esc
from .source import InForce, Source, open_source
from .statistics import html_table

PAGE = "statistics/monthly.md"


def monthly_report(source: Source, month: Month) -> PublicReport:
    """The public report of ``month`` at the source's commit: the same for the same
    commit and month, whatever the day."""
    procedure = source.programme()
    months = int(source.settings.get("post_closure_monitoring_months", 3))
    cases = [
        reports.case_month(case, procedure, month, months)
        for case in source.cases(reports.REPORT_FIELDS)
    ]
    active, figures = reports.open_figures(cases, procedure)
    return reports.public_report(
        month,
        source.head,
        str(source.settings.get("programme_name", "")),
        active,
        figures,
        source.threshold,
    )


def public_monthly_report(
    directory: Path | None, month: Month, *, in_force: InForce, commit: str | None = None
) -> PublicReport:
    return monthly_report(open_source(directory, commit, in_force=in_force), month)


def monthly_page(rep: PublicReport) -> str:
    k = rep.threshold
    parts = [
        f"# Monthly case report {rep.month.label}",
        "",
        f"**{esc(rep.programme)}**. The month {rep.month.label}, from commit "
        f"{code(rep.commit)}. Built from the open fields of the case records and the "
        "history of the repository, without any key; after Annex 5 of the agency practice "
        "review (the monthly case report), with categories only.",
        "",
        '!!! note "How to read this report"',
        f"    Counts from 1 to {k - 1} are shown as **{esc(stats.hidden_mark(k))}**; a "
        f"count shown as **{stats.COMPLEMENT}** is hidden so that a small count cannot be "
        "worked out from the totals. Rates are shown only where at least "
        f"{stats.MIN_N_DERIVED} cases count and no count behind them is hidden; otherwise "
        f"{stats.NOT_SHOWN}. Concerns, referrals, BIA and BID and family tracing are in "
        "sealed forms: they are in the internal report, sealed to the programme managers.",
        "",
        f"Cases active in the month: **{esc(str(rep.active))}**.",
        "",
    ]
    if rep.small_programme:
        parts += [
            '!!! info "A small programme"',
            f"    With fewer than {max(stats.SMALL_PROGRAMME, k)} cases active in the month "
            "only their number is published.",
            "",
        ]
    for table in rep.tables:
        parts += [f"## {esc(table.title)}", "", html_table(table), ""]
        if table.note:
            parts += [esc(table.note), ""]
        if table.id == PERCENT_OF and rep.rates:
            parts += [
                "Rates: "
                + "; ".join(f"{esc(label)}: {esc(rate)}" for label, rate in rep.rates.items())
                + ".",
                "",
            ]
    if rep.withheld:
        parts += [
            f"{len(rep.withheld)} table(s) are not published: no suppression of them would "
            "keep every small count hidden.",
            "",
        ]
    return "\n".join(parts)


def site_month(today: dt.date) -> Month:
    """The month the site publishes: the latest that has ended."""
    return Month.last_complete(today)
