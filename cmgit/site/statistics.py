"""The statistics: the figures of one commit, computed from the open fields and history
and remembered, as `cmgit stats` prints them; and the statistics page that shows them,
each table with its chart.

The figures come from ``cmgit.stats``, where suppression lives; this module remembers them
and lays them out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .. import caches, pool, stats
from ..progress import SILENT, Progress
from .charts import bar_chart, days_chart
from .markup import code, esc
from .source import InForce, Source, open_source

STATS_CACHE = "statistics"
# Remembered figures are keyed by the source of cmgit.stats: a change to the statistics
# code computes them again.
STATS_CODE = hashlib.sha256(Path(stats.__file__).read_bytes()).hexdigest()[:16]


@dataclass
class Report:
    """The statistics of one commit, as `cmgit stats` prints them and the site shows them."""

    commit: str
    programme_name: str
    profile: str
    result: stats.Statistics
    # Said on stderr, never in the figures: the configuration committed is not the one
    # in force, so the figures are by the one before it.
    config_warning: str | None = None

    @property
    def tables(self) -> list[stats.Table]:
        return self.result.tables

    def as_dict(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "programme": self.programme_name,
            "display_profile": self.profile,
            **self.result.as_dict(),
        }


def report(source: Source, as_of: dt.date) -> Report:
    # The figures of a commit on a day never change: remembered under the commit, the
    # configuration they were computed by, the day and the source of the statistics code,
    # a repeated run computes nothing.
    key = (source.head, source.config_ids, as_of.isoformat(), STATS_CODE)
    remembered = caches.remembered(source.git, STATS_CACHE, key)
    if remembered is not None:
        result = _statistics_from(remembered)
    else:
        programme = source.programme()
        if source.keeps_state_history:
            # Once the records are read, the figures of the cases and those of their state
            # histories are computed on two cores.
            source.rows()
            figures = pool.Forked(lambda: stats.case_figures(source.cases(), programme, as_of))
            tables = stats.history_tables(source.changes(), programme, as_of)
            result = stats.with_history(figures.result(), tables)
        else:
            # git reads its history while the cores read the records.
            changes = pool.Background(source.changes)
            result = stats.compute(source.cases(), changes.result(), programme, as_of)
        caches.remember(source.git, STATS_CACHE, key, _statistics_to(result))
    return Report(
        source.head,
        str(source.settings.get("programme_name", "")),
        source.profile,
        result,
        source.config_warning,
    )


def _statistics_to(result: stats.Statistics) -> tuple[Any, ...]:
    tables = tuple(tuple(getattr(t, f.name) for f in fields(stats.Table)) for t in result.tables)
    return (result.as_of.isoformat(), result.threshold, result.open_cases, tables, result.withheld)


def _statistics_from(stored: tuple[Any, ...]) -> stats.Statistics:
    as_of, threshold, open_cases, tables, withheld = stored
    return stats.Statistics(
        dt.date.fromisoformat(as_of),
        threshold,
        open_cases,
        [stats.Table(*t) for t in tables],
        withheld,
    )


def statistics_report(
    directory: Path | None, *, today: dt.date, in_force: InForce, progress: Progress = SILENT
) -> Report:
    source = open_source(directory, in_force=in_force)
    source.progress = progress
    return report(source, today)


# -- the statistics page -----------------------------------------------------------------


def html_table(table: stats.Table) -> str:
    headers, rows = table.grid_rows()
    out = [
        "<table>",
        "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead>",
        "<tbody>",
    ]
    for row in rows:
        out.append(
            "<tr>"
            + "".join(
                f"<td>{esc(cell)}</td>" if n == 0 else f'<td align="right">{esc(cell)}</td>'
                for n, cell in enumerate(row)
            )
            + "</tr>"
        )
    out.append("</tbody></table>")
    return "".join(out)


def chart(table: stats.Table) -> str:
    """The chart a table asks for (its ``chart`` field), or none."""
    if table.chart == "days":
        return days_chart(
            table.title,
            table.rows,
            [str(r[1]) for r in table.cells],
            [str(r[2]) for r in table.cells],
        )
    if table.chart != "bars":
        return ""
    return bar_chart(table.title, table.rows, table.columns, table.cells)


def statistics_page(source: Source, rep: Report, as_of: dt.date) -> str:
    k = rep.result.threshold
    parts = [
        "# Statistics",
        "",
        f"**{esc(rep.programme_name)}**. Figures as of {as_of.isoformat()}, built from commit "
        f"{code(rep.commit)}.",
        "",
        "Every figure comes from the open fields of the case records and the history of "
        "the repository: the site is built without any key and cannot read a sealed form. "
        "No case number, staff ID, name, date of an event in a child's case or free text "
        "is published. The [monthly case report](monthly.md) gives the figures of the "
        "latest month that has ended.",
        "",
        '!!! note "How to read these figures"',
        f"    Counts from 1 to {k - 1} are shown as **{esc(stats.hidden_mark(k))}**. A "
        f"count shown as **{stats.COMPLEMENT}** is hidden as well, so that a small count "
        "cannot be worked out from the totals. Medians and percentiles are shown only "
        f"where at least {stats.MIN_N_DERIVED} cases count; otherwise {stats.NOT_SHOWN}. "
        f"No table has more than two dimensions. The threshold ({k}) is the setting "
        "`suppression_threshold`.",
        "",
    ]
    if rep.result.withheld:
        parts += [
            '!!! info "A small programme"',
            f"    With fewer than {stats.SMALL_PROGRAMME} open cases only the caseload of "
            "caseworkers, the overdue follow-ups and reviews and the number of open cases "
            "are published: any finer table would single out children.",
            "",
        ]
    for table in rep.tables:
        picture = chart(table)
        parts += [f"## {esc(table.title)}", ""]
        parts.append('<div class="cmgit-stat">')
        if picture:
            parts.append(f'<figure class="cmgit-figure">{picture}</figure>')
        parts.append(f'<div class="cmgit-stat-table">{html_table(table)}</div>')
        parts += ["</div>", ""]
        if table.note:
            parts += [esc(table.note), ""]
    parts += [
        "## Method",
        "",
        "- Open cases are cases in any step before `closed`; post-closure monitoring "
        "counts as open. Steps are named after the programme's display profile.",
        "- Caseloads count the cases in the states that count toward a caseload; "
        "caseworkers are shown in bands only.",
        "- Time in each state is measured between the changes of state recorded in the "
        "history of each case; only stays that have ended count.",
        f"- Small counts are suppressed with a threshold of {k}, with complementary "
        "suppression so that no hidden count follows from the published totals. "
        "Comparing two releases can still narrow a count down: publish on a fixed "
        "schedule (for example monthly), not after every change.",
        "",
    ]
    return "\n".join(parts)
