"""The published site: reference pages from the workflow and schemas, statistics from open
fields and history, and the MkDocs-Material build that turns them and the SOP pages into
static HTML.

A site build can never decrypt: this module reads the committed tree and the history with
git alone and imports nothing that handles keys. Everything it publishes comes from the
workflow data, the schemas and ``cmgit.stats`` (suppressed tables); the SOP pages come
from ``site/``. Before anything reaches the output folder the built files are checked:
only allow-listed file types are kept, and a record file, an age message or anything
shaped like a case record fails the whole build, which then publishes nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import html
import json
import logging
import operator
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from . import caches, ids, pool, stats
from .config import (
    SCHEMAS_DIR,
    SETTINGS_FILE,
    STAFF_FILE,
    WORKFLOW_FILE,
    load_workflow,
    read_config,
    read_document,
)
from .errors import (
    CmgitError,
    InvalidRecord,
    NotACaseRepository,
    UsageError,
)
from .history import Git
from .progress import SILENT, Progress
from .registry import CASEWORKER, Registry, settings_defaults
from .schema import CASE, FORM_PREFIX, SETTINGS, STAFF, SchemaSet
from .workflow import CLOSED, MONITORING, STATE_HISTORY, Workflow

SITE_DIR = "site"
MKDOCS_FILE = "mkdocs.yml"
DEFAULT_OUT = "site-build"

# What may be published, by file name ending; everything else is removed from the output.
ALLOWED_TYPES = frozenset(
    {"html", "css", "js", "json", "svg", "png", "ico", "woff2", "xml", "txt", "map", "gz"}
)
# The case number the SOP pages use as their example (SPEC section 1).
EXAMPLE_CASE_ID = "CP-7K2M9QX4"
SHIM = "assets/javascripts/iframe-worker/shim.js"
STYLESHEET = "assets/stylesheets/cmgit.css"
GENERATED_PAGES = (
    "reference/index.md",
    "reference/states.md",
    "reference/transitions.md",
    "reference/guards.md",
    "reference/forms.md",
    "statistics/index.md",
)

_CASE_ID_BYTES = re.compile(rb"[A-Z]{2,5}-[0-9A-HJKMNP-TV-Z]{8}")
_RECORD_LINE = re.compile(rb"(?m)^[ \t]*case_id:")
_AGE_MARKERS = (b"BEGIN AGE ENCRYPTED FILE", b"age-encryption.org")
_REMOTE = r"""["']?\s*(?:https?:)?//"""
# What a browser fetches by itself when a page is viewed: scripts, styles, fonts, images,
# frames. Links a reader may follow (<a href>, rel="canonical") fetch nothing.
_FETCHING_TAG = re.compile(
    r"<(?:script|img|iframe|frame|source|embed|video|audio|track|input)\b[^>]*\s(?:src|srcset|poster)"
    r"\s*=\s*" + _REMOTE + r"|<object\b[^>]*\sdata\s*=\s*" + _REMOTE,
    re.IGNORECASE,
)
_LINK_TAG = re.compile(r"<link\b[^>]*>", re.IGNORECASE)
_LINK_FOLLOWED = re.compile(
    r"""\srel\s*=\s*["']?(?:canonical|alternate|next|prev|author|license|help|me)\b""",
    re.IGNORECASE,
)
_LINK_REMOTE = re.compile(r"\shref\s*=\s*" + _REMOTE, re.IGNORECASE)
_CSS_REMOTE = re.compile(r"url\(\s*" + _REMOTE + r"|@import\s+" + _REMOTE, re.IGNORECASE)


def fetches_from_the_web(text: str) -> bool:
    """Whether an HTML page or a stylesheet makes the browser fetch something remote."""
    if _FETCHING_TAG.search(text) or _CSS_REMOTE.search(text):
        return True
    return any(
        _LINK_REMOTE.search(tag) and not _LINK_FOLLOWED.search(tag)
        for tag in _LINK_TAG.findall(text)
    )


class UnsafeOutput(InvalidRecord):
    """The built site holds something that must never be published (exit 3)."""


# -- reading the committed repository, without any key -----------------------------------


@dataclass
class Source:
    """The committed configuration and cases of a repository, read with git alone."""

    git: Git
    head: str
    schemas: SchemaSet
    workflow: Workflow
    settings: dict[str, Any]
    caseworkers: list[str]
    progress: Progress = SILENT
    _rows: list[tuple[Any, ...]] | None = field(default=None, repr=False)

    @property
    def root(self) -> Path:
        return self.git.root

    @property
    def profile(self) -> str:
        name = str(self.settings.get("display_profile", "iag6"))
        return name if name in self.workflow.profiles else next(iter(self.workflow.profiles))

    @property
    def threshold(self) -> int:
        return int(self.settings.get("suppression_threshold", stats.DEFAULT_THRESHOLD))

    def rows(self) -> list[tuple[Any, ...]]:
        """Open fields of every case committed at HEAD, each a tuple in the schema's order;
        unreadable records are left out."""
        if self._rows is None:
            self._rows = caches.open_rows(
                self.git, self.head, self.schemas.open_fields, self.progress
            )
        return self._rows

    def column(self, name: str) -> list[Any]:
        at = self.schemas.open_fields.index(name)
        return [row[at] for row in self.rows()]

    def cases(self) -> list[dict[str, Any]]:
        """Of every case, the open fields the statistics read, by name (only those: a
        programme has 100,000 cases, and the mappings cost more than the figures)."""
        order = self.schemas.open_fields
        wanted = [name for name in stats.CASE_FIELDS if name in order]
        pick = operator.itemgetter(*(order.index(name) for name in wanted))
        return [dict(zip(wanted, pick(row), strict=True)) for row in self.rows()]

    @property
    def keeps_state_history(self) -> bool:
        return STATE_HISTORY in self.schemas.open_fields

    def changes(self) -> list[stats.Change]:
        """Every change of state of every case, each case under an opaque key: from the
        state histories in the open fields, or, for a schema that keeps none, from the
        commits' trailers in git's history."""
        if self.keeps_state_history:
            return stats.history_changes(self.column(STATE_HISTORY))
        return self.logged_changes()

    def logged_changes(self) -> list[stats.Change]:
        """Every change of state in the commits' trailers, oldest first, each case under an
        opaque key."""
        keys: dict[str, str] = {}
        found = []
        for case, when, source, target in caches.state_changes(self.git, self.head):
            day = stats.to_day(when)
            if day is not None:
                key = keys.setdefault(case, f"case-{len(keys) + 1}")
                found.append(stats.Change(key, day, source, target))
        return found

    def programme(self) -> stats.Programme:
        flow = self.workflow
        reasons = self.schemas.resolve("urn:cmgit:schema:common#/$defs/closure_reason")
        return stats.Programme(
            states=tuple(flow.states),
            open_states=frozenset(flow.held_states),
            caseload_states=flow.caseload_states,
            finished_states=frozenset({CLOSED, MONITORING}),
            initial_state=flow.initial_state,
            registered_state="registered",
            labels={s: flow.label(s, self.profile) for s in flow.states},
            closure_reasons=tuple(reasons.get("enum", ())),
            caseworkers=tuple(self.caseworkers),
            threshold=self.threshold,
            caseload_limit=int(self.settings.get("caseload_limit", 25)),
        )


def open_source(directory: Path | None) -> Source:
    git = Git.discover(directory or Path.cwd())
    head = git.head()
    if head is None:
        raise NotACaseRepository(
            "the repository has no commits yet", hint="run cmgit init DIR, or use -C DIR"
        )
    with contextlib.suppress(CmgitError):  # the usual case: the whole configuration, remembered
        config = read_config(git, head)
        return Source(
            git,
            head,
            config.schemas,
            config.workflow,
            config.settings,
            [m.id for m in config.registry.active(CASEWORKER)],
        )
    # A repository with parts of the configuration missing still gets its SOP pages.
    paths = [p for p in git.files_under(head, SCHEMAS_DIR) if p.endswith(".json")]
    files = git.read_paths(head, [*paths, WORKFLOW_FILE, SETTINGS_FILE, STAFF_FILE])
    docs = [json.loads(data) for p in paths if (data := files.get(p)) is not None]
    schemas = SchemaSet({doc["$id"]: doc for doc in docs if isinstance(doc, dict)})
    if CASE not in schemas.schemas or files.get(WORKFLOW_FILE) is None:
        raise NotACaseRepository(
            "not a cmgit case repository", hint="run cmgit init DIR, or use -C DIR"
        )
    settings_schema = schemas.schemas[SETTINGS]
    data = files.get(SETTINGS_FILE)
    settings = (
        settings_defaults(settings_schema)
        if data is None
        else read_document(data, schemas, SETTINGS, SETTINGS_FILE)
    )
    data = files.get(STAFF_FILE)
    registry = (
        None if data is None else Registry.from_doc(read_document(data, schemas, STAFF, STAFF_FILE))
    )
    caseworkers = [] if registry is None else [m.id for m in registry.active(CASEWORKER)]
    return Source(
        git, head, schemas, load_workflow(files.get(WORKFLOW_FILE), schemas), settings, caseworkers
    )


# -- statistics --------------------------------------------------------------------------


@dataclass
class Report:
    """The statistics of one commit, as `cmgit stats` prints them and the site shows them."""

    commit: str
    programme_name: str
    profile: str
    result: stats.Statistics

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
    # The figures of a commit on a day never change: remembered under the commit, the day
    # and the source of the statistics code, a repeated run computes nothing.
    key = (source.head, as_of.isoformat(), STATS_CODE)
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
        source.head, str(source.settings.get("programme_name", "")), source.profile, result
    )


STATS_CACHE = "statistics"
STATS_CODE = hashlib.sha256(Path(stats.__file__).read_bytes()).hexdigest()[:16]


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
    directory: Path | None, *, today: dt.date, progress: Progress = SILENT
) -> Report:
    source = open_source(directory)
    source.progress = progress
    return report(source, today)


# -- Markdown and SVG helpers ------------------------------------------------------------


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def md_cell(text: object) -> str:
    """Text for a Markdown table cell: no pipes or line breaks, HTML escaped."""
    return esc(text).replace("|", "&#124;").replace("\n", " ")


def code(text: object) -> str:
    return f"<code>{esc(text)}</code>"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def anchor(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "-", name.lower())


PALETTE = ("#3f51b5", "#e08a00", "#2e9d6b", "#8e5fb5", "#c2416b", "#5c6b73")


def _text_width(text: str, size: int = 12) -> int:
    return int(len(text) * size * 0.58) + 4


def bar_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[str],
    values: Sequence[Sequence[stats.Shown]],
    *,
    unit: str = "",
) -> str:
    """Horizontal grouped bars as inline SVG; hidden values get their mark and no bar."""
    numbers = [v for row in values for v in row if isinstance(v, int)]
    top = max(numbers, default=0) or 1
    left = min(220, max([_text_width(lbl) for lbl in labels] + [60]))
    bar_area = 260
    bar_h = 12 if len(series) > 1 else 16
    gap = 3
    legend_h = 22 if len(series) > 1 else 0
    group_h = len(series) * (bar_h + gap) + 8
    width = left + bar_area + 60
    height = legend_h + len(labels) * group_h + 6
    out = [
        f'<svg class="cmgit-chart" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" font-size="12" font-family="sans-serif">',
        f"<title>{esc(title)}</title>",
    ]
    if len(series) > 1:
        x = left
        for n, name in enumerate(series):
            colour = PALETTE[n % len(PALETTE)]
            out.append(f'<rect x="{x}" y="4" width="10" height="10" fill="{colour}"/>')
            out.append(f'<text x="{x + 14}" y="13" fill="currentColor">{esc(name)}</text>')
            x += 14 + _text_width(name) + 10
    for row, label in enumerate(labels):
        y0 = legend_h + row * group_h + 4
        mid = y0 + (len(series) * (bar_h + gap)) // 2 + 4
        out.append(
            f'<text x="{left - 6}" y="{mid}" text-anchor="end" '
            f'fill="currentColor">{esc(label)}</text>'
        )
        for n, _name in enumerate(series):
            value = values[row][n]
            y = y0 + n * (bar_h + gap)
            if isinstance(value, int):
                length = round(value / top * bar_area)
                colour = PALETTE[n % len(PALETTE)]
                if length:
                    out.append(
                        f'<rect x="{left}" y="{y}" width="{length}" height="{bar_h}" '
                        f'fill="{colour}"/>'
                    )
                out.append(
                    f'<text x="{left + length + 4}" y="{y + bar_h - 2}" '
                    f'fill="currentColor">{value}{esc(unit)}</text>'
                )
            else:
                out.append(
                    f'<text x="{left + 4}" y="{y + bar_h - 2}" fill="currentColor" '
                    f'font-style="italic" opacity="0.7">{esc(value)}</text>'
                )
    out.append(
        f'<line x1="{left}" y1="{legend_h}" x2="{left}" y2="{height - 2}" '
        f'stroke="currentColor" stroke-opacity="0.4"/>'
    )
    out.append("</svg>")
    return "".join(out)


def days_chart(
    title: str, labels: Sequence[str], medians: Sequence[str], p75: Sequence[str]
) -> str:
    """Median days as a bar, the 75th percentile as a lighter extension."""

    def number(text: str) -> float | None:
        try:
            return float(text)
        except ValueError:
            return None

    top = max([v for v in map(number, p75) if v is not None] + [1.0])
    left = min(260, max([_text_width(lbl) for lbl in labels] + [60]))
    bar_area, row_h = 260, 22
    width, height = left + bar_area + 90, 28 + len(labels) * row_h
    out = [
        f'<svg class="cmgit-chart" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" font-size="12" font-family="sans-serif">',
        f"<title>{esc(title)}</title>",
        f'<rect x="{left}" y="4" width="10" height="10" fill="{PALETTE[0]}"/>',
        f'<text x="{left + 14}" y="13" fill="currentColor">median</text>',
        f'<rect x="{left + 80}" y="4" width="10" height="10" fill="{PALETTE[0]}" '
        f'fill-opacity="0.35"/>',
        f'<text x="{left + 94}" y="13" fill="currentColor">75th percentile</text>',
    ]
    for row, label in enumerate(labels):
        y = 24 + row * row_h
        out.append(
            f'<text x="{left - 6}" y="{y + 12}" text-anchor="end" '
            f'fill="currentColor">{esc(label)}</text>'
        )
        med, high = number(medians[row]), number(p75[row])
        if med is None or high is None:
            out.append(
                f'<text x="{left + 4}" y="{y + 12}" fill="currentColor" '
                f'opacity="0.7">{esc(stats.NOT_SHOWN)}</text>'
            )
            continue
        m_len, h_len = round(med / top * bar_area), round(high / top * bar_area)
        out.append(
            f'<rect x="{left}" y="{y}" width="{h_len}" height="16" fill="{PALETTE[0]}" '
            f'fill-opacity="0.35"/>'
        )
        out.append(f'<rect x="{left}" y="{y}" width="{m_len}" height="16" fill="{PALETTE[0]}"/>')
        out.append(
            f'<text x="{left + h_len + 4}" y="{y + 12}" fill="currentColor">'
            f"{esc(medians[row])} / {esc(p75[row])} days</text>"
        )
    out.append("</svg>")
    return "".join(out)


# -- the state diagram -------------------------------------------------------------------


class _Arc:
    """One arrow: from one or more states (a shared lane, like a bus) to a target."""

    def __init__(self, sources: list[str], target: str, ids: list[str], side: str):
        self.sources = sources
        self.target = target
        self.ids = ids
        self.side = side
        self.lane = 0
        self.ports: dict[str, int] = {}


def state_diagram(flow: Workflow, profile: str) -> str:
    """Boxes for the states in workflow order, one above the other. Transitions leading
    further down the procedure run on the right, those leading back on the left; a
    transition from several states to one shares one lane. Lanes are assigned so that no
    two arrows share a stretch of the same lane. The same data always give the same SVG.
    """
    states = list(flow.states)
    order = {s: n for n, s in enumerate(states)}
    by_pair: dict[tuple[str, str], list[str]] = {}
    for t in flow.transitions.values():
        for source in t.sources:
            by_pair.setdefault((source, t.target), []).append(t.id)
    groups: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
    for (source, target), tids in by_pair.items():
        side = "right" if order[target] > order[source] else "left"
        groups.setdefault((target, side, tuple(tids)), []).append(source)
    arcs = [
        _Arc(sorted(srcs, key=order.__getitem__), target, list(tids), side)
        for (target, side, tids), srcs in groups.items()
    ]

    def span(arc: _Arc) -> tuple[int, int]:
        ends = [order[s] for s in arc.sources] + [order[arc.target]]
        return min(ends), max(ends)

    lanes: dict[str, list[list[tuple[int, int]]]] = {"right": [], "left": []}
    for arc in sorted(arcs, key=lambda a: (span(a)[1] - span(a)[0], span(a), a.ids)):
        low, high = span(arc)
        taken = lanes[arc.side]
        for n, used in enumerate(taken):
            if all(high < a or low > b for a, b in used):
                used.append((low, high))
                arc.lane = n
                break
        else:
            taken.append([(low, high)])
            arc.lane = len(taken) - 1
    # Ports: where arrows meet a box side, spread along it so that arrows do not cross
    # at the box: going up, inner lanes leave from higher up; going down, from lower.
    ports: dict[tuple[str, str], list[tuple[_Arc, bool]]] = {}
    for arc in arcs:
        for state in [*arc.sources, arc.target]:
            ports.setdefault((state, arc.side), []).append((arc, state == arc.target))
    most = max((len(v) for v in ports.values()), default=1)
    box_h = max(44, 10 * (most + 1))
    box_w, pitch, lane_w = 230, box_h + 26, 18
    left_w = 30 + lane_w * len(lanes["left"])
    right_w = 30 + lane_w * len(lanes["right"])
    x0 = left_w
    width = left_w + box_w + right_w
    height = len(states) * pitch + 10
    tops = {s: 10 + n * pitch for n, s in enumerate(states)}
    for (state, _side), items in sorted(ports.items()):

        def key(item: tuple[_Arc, bool], state: str = state) -> tuple[int, int, int]:
            arc, incoming = item
            others = [order[s] for s in arc.sources] if incoming else [order[arc.target]]
            above = min(others) < order[state]
            return (0 if above else 1, arc.lane if above else -arc.lane, int(incoming))

        items.sort(key=key)
        for n, (arc, _incoming) in enumerate(items):
            arc.ports[state] = tops[state] + (n + 1) * box_h // (len(items) + 1)
    out = [
        f'<svg class="cmgit-diagram" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" font-size="12" font-family="sans-serif">',
        "<title>States and transitions of the case workflow</title>",
    ]
    for arc in sorted(arcs, key=lambda a: (a.side, a.lane, a.ids)):
        step = 1 if arc.side == "right" else -1
        edge = x0 + box_w if arc.side == "right" else x0
        x = edge + step * (16 + lane_w * arc.lane)
        end = arc.ports[arc.target]
        ys = [arc.ports[s] for s in arc.sources] + [end]
        closing = arc.target == CLOSED
        colour = "#6b7780" if closing else ("#3f51b5" if arc.side == "right" else "#c2416b")
        label = ", ".join(arc.ids)
        path = "".join(f"M{edge},{arc.ports[s]} H{x} " for s in arc.sources)
        path += f"M{x},{min(ys)} V{max(ys)} M{x},{end} H{edge + step * 2}"
        head = f"{edge},{end} {edge + step * 8},{end - 4} {edge + step * 8},{end + 4}"
        out.append(
            f'<g class="cmgit-arc"><title>{esc(label)}: {esc(", ".join(arc.sources))} to '
            f"{esc(arc.target)}</title>"
            f'<path d="{path.strip()}" fill="none" stroke="{colour}" stroke-width="1.5"/>'
            f'<polygon points="{head}" fill="{colour}"/></g>'
        )
        near = min((y for y in ys[:-1]), key=lambda y: abs(y - end))
        mid = (near + end) // 2
        tx = x - 4 if arc.side == "right" else x + 4
        out.append(
            f'<text x="{tx}" y="{mid}" font-size="9" fill="{colour}" '
            f'transform="rotate(-90 {tx} {mid})" text-anchor="middle">'
            f"{esc(label)}</text>"
        )
    for state in states:
        y = tops[state]
        initial = state == flow.initial_state
        out.append(
            f'<g class="cmgit-state"><rect x="{x0}" y="{y}" width="{box_w}" height="{box_h}" '
            f'rx="6" fill="#e8eaf6" stroke="#3f51b5" stroke-width="{2 if initial else 1}"/>'
            f'<text x="{x0 + box_w // 2}" y="{y + box_h // 2 - 3}" text-anchor="middle" '
            f'font-weight="bold" fill="#1a237e">{esc(state)}</text>'
            f'<text x="{x0 + box_w // 2}" y="{y + box_h // 2 + 12}" text-anchor="middle" '
            f'font-size="10" fill="#37474f">{esc(flow.label(state, profile))}</text></g>'
        )
    out.append("</svg>")
    return "".join(out)


# -- reference pages ---------------------------------------------------------------------


def _link_state(state: str) -> str:
    return f"[{esc(state)}](states.md#{anchor(state)})"


def _link_guard(code_: str) -> str:
    return f"[{esc(code_)}](guards.md#{anchor(code_)})"


def _link_transition(tid: str) -> str:
    return f"[{esc(tid)}](transitions.md#{anchor(tid)})"


def _built_line(source: Source) -> str:
    return (
        f"Generated from the workflow and schema files of commit {code(source.head)}; "
        "edit `schemas/` to change them, never these pages."
    )


def reference_pages(source: Source) -> dict[str, str]:
    flow, schemas, profile = source.workflow, source.schemas, source.profile
    profile_title = str(flow.profiles[profile].get("title", profile))
    forms = [f for f in schemas.sealed_fields if schemas.form_mode(f) != "system"]
    pages = {}
    pages["reference/index.md"] = "\n".join(
        [
            "# Reference",
            "",
            "These pages say exactly what the case tool enforces. They are written by "
            "`cmgit site build` from the workflow and schema files of the case repository, so "
            "the procedure described in the SOP pages and the tool cannot drift apart.",
            "",
            _built_line(source),
            "",
            f"- [States](states.md): the {len(flow.states)} states of a case, with a diagram of "
            "the moves between them.",
            f"- [Transitions](transitions.md): the {len(flow.transitions)} transitions, who may "
            "make them and the guards they must pass; the forms recorded without a change of "
            "state; reassignment.",
            f"- [Guards](guards.md): the {len(flow.guards)} guards, what each checks and where "
            "it applies.",
            f"- [Forms](forms.md): the {len(forms)} forms and every field, with its type, "
            "allowed values and data class; which fields of a record are open and which are "
            "sealed.",
            "",
            f"Step names follow the display profile **{esc(profile_title)}** "
            f"(setting `display_profile`: {code(profile)}).",
            "",
        ]
    )
    pages["reference/states.md"] = _states_page(source, profile, profile_title)
    pages["reference/transitions.md"] = _transitions_page(source)
    pages["reference/guards.md"] = _guards_page(source)
    pages["reference/forms.md"] = _forms_page(source, forms)
    return pages


def _states_page(source: Source, profile: str, profile_title: str) -> str:
    flow = source.workflow
    leaving: dict[str, list[str]] = {s: [] for s in flow.states}
    entering: dict[str, list[str]] = {s: [] for s in flow.states}
    for t in flow.transitions.values():
        for s in t.sources:
            leaving[s].append(t.id)
        entering[t.target].append(t.id)
    rows = []
    for state, info in flow.states.items():
        rows.append(
            [
                f'<span id="{anchor(state)}"></span>{code(state)}',
                md_cell(flow.label(state, profile)),
                "yes" if info.get("caseload") else "no",
                md_cell(info.get("summary", "")),
                ", ".join(_link_transition(t) for t in leaving[state]) or "–",
                ", ".join(_link_transition(t) for t in entering[state]) or "–",
            ]
        )
    profiles = list(flow.profiles)
    profile_rows = [[code(s), *(md_cell(flow.label(s, p)) for p in profiles)] for s in flow.states]
    events = [[code(e.form), ", ".join(code(s) for s in e.states)] for e in flow.events.values()]
    return "\n".join(
        [
            "# States",
            "",
            _built_line(source),
            "",
            f"A case is always in exactly one of these {len(flow.states)} states. It starts in "
            f"{code(flow.initial_state)}. Arrows on the right lead further through the "
            "procedure, arrows on the left lead back (reassessment, revision, reopening); grey "
            "arrows close the case. Each arrow is labelled with its transitions; see "
            "[Transitions](transitions.md) for who may make them and what they check.",
            "",
            '<figure class="cmgit-figure">',
            state_diagram(flow, profile),
            "<figcaption>The case workflow, drawn from <code>schemas/workflow.yaml</code>."
            "</figcaption>",
            "</figure>",
            "",
            f"## The states ({esc(profile_title)})",
            "",
            md_table(
                ["State", "Step", "Counts toward caseload", "Meaning", "Leaves by", "Enters by"],
                rows,
            ),
            "## Step names in each display profile",
            "",
            "The states are the same for every programme; a display profile only names them "
            "after a step model. The setting `display_profile` chooses one.",
            "",
            md_table(
                ["State", *(md_cell(flow.profiles[p].get("title", p)) for p in profiles)],
                profile_rows,
            ),
            "## Forms that may be recorded in each state",
            "",
            md_table(["Form", "States"], events),
        ]
    )


def _transitions_page(source: Source) -> str:
    flow = source.workflow
    roles = [
        [
            code(r),
            code(scope),
            {
                "own": "cases where they are the key caseworker",
                "team": "cases of their team",
                "all": "every case",
                "none": "no case",
            }.get(scope, scope),
        ]
        for r, scope in flow.scopes.items()
    ]
    rows = []
    for t in flow.transitions.values():
        guards = [_link_guard(g) for g in t.guards]
        if t.four_eyes:
            guards.append(f"four eyes: {_link_guard(t.four_eyes)}")
        if t.reasons:
            reasons = "; ".join(
                code(r) + (" (" + ", ".join(_link_guard(g) for g in extra) + ")" if extra else "")
                for r, extra in t.reasons.items()
            )
        else:
            reasons = "–"
        rows.append(
            [
                f'<span id="{anchor(t.id)}"></span>**{esc(t.id)}**',
                ", ".join(_link_state(s) for s in t.sources),
                _link_state(t.target),
                ", ".join(code(r) for r in t.by),
                ", ".join(guards) or "–",
                reasons,
                ", ".join(code(e) for e in t.effects) or "–",
                md_cell(t.summary),
            ]
        )
    events = [
        [
            code(e.form),
            ", ".join(_link_state(s) for s in e.states),
            ", ".join(code(r) for r in e.by),
            ", ".join(_link_guard(g) for g in e.guards) or "–",
        ]
        for e in flow.events.values()
    ]
    a = flow.assignment
    return "\n".join(
        [
            "# Transitions",
            "",
            _built_line(source),
            "",
            "A case changes state only through one of these transitions, with "
            "`cmgit move ID STATE`. The person acting must have one of the roles listed, the "
            "case must be within their scope, and every guard must hold; a refused move lists "
            "each failing guard by code and changes nothing. Guards marked *warn* are printed "
            "and let the move through. Where a transition takes a reason (`--reason`), the "
            'reason may add guards of its own. "Four eyes" means the person authorising is '
            "not the case's caseworker.",
            "",
            "## Roles and their scope",
            "",
            md_table(["Role", "Scope", "Acts on"], roles),
            "## The transitions",
            "",
            md_table(
                [
                    "ID",
                    "From",
                    "To",
                    "Who",
                    "Guards",
                    "Reasons (and their guards)",
                    "Effects",
                    "What it means",
                ],
                rows,
            ),
            "Every change also passes the general guards "
            f"{_link_guard('GA')}, {_link_guard('GB')} and {_link_guard('GD')}."
            if {"GA", "GB", "GD"} <= set(flow.guards)
            else "",
            "",
            "## Forms recorded without a change of state",
            "",
            "`cmgit record ID FORM --from FILE` adds or updates one form, in the states listed, "
            "by the roles listed. See [Forms](forms.md) for every field.",
            "",
            md_table(["Form", "States", "Who", "Guards"], events),
            "## Reassignment",
            "",
            f"`cmgit assign ID STAFF --reason CODE`: by {', '.join(code(r) for r in a.by)}; in "
            f"the states {', '.join(_link_state(s) for s in a.states)}; reasons "
            f"{', '.join(code(r) for r in a.reasons)}; guards "
            f"{', '.join(_link_guard(g) for g in a.guards) or '–'}.",
            "",
        ]
    )


def _guards_page(source: Source) -> str:
    flow = source.workflow
    used: dict[str, list[str]] = {g: [] for g in flow.guards}
    for t in flow.transitions.values():
        codes = [*t.guards, *([t.four_eyes] if t.four_eyes else [])]
        for extra in (t.reasons or {}).values():
            codes += list(extra)
        for g in dict.fromkeys(codes):
            used.setdefault(g, []).append(_link_transition(t.id))
    for e in flow.events.values():
        for g in e.guards:
            used.setdefault(g, []).append(f"recording {code(e.form)}")
    for g in flow.assignment.guards:
        used.setdefault(g, []).append("reassignment")
    severity = {"hard": "refuses", "warn": "warns", "override": "refuses unless overridden"}
    rows = []
    for guard in flow.guards.values():
        how = (
            "a condition on the whole record (JSON Schema)"
            if guard.schema is not None
            else f"the check {code(guard.check)}"
        )
        rows.append(
            [
                f'<span id="{anchor(guard.code)}"></span>**{esc(guard.code)}**',
                severity.get(guard.severity, esc(guard.severity)),
                md_cell(guard.summary),
                how,
                ", ".join(used.get(guard.code, [])) or "every change",
            ]
        )
    return "\n".join(
        [
            "# Guards",
            "",
            _built_line(source),
            "",
            "A guard is a rule a change must satisfy. *Refuses*: the change is refused and "
            "nothing is committed (exit 4). *Warns*: a warning is printed, recorded in the "
            "commit, and the change goes through. *Refuses unless overridden*: a supervisor may "
            "accept it with a reason, which is kept sealed. Numbers such as notice periods and "
            "intervals come from the programme settings.",
            "",
            md_table(
                ["Guard", "When it fails", "Rule", "How it is checked", "Where it applies"], rows
            ),
        ]
    )


# -- forms -------------------------------------------------------------------------------


CLASSES = {
    "P": "personally identifying",
    "S": "sensitive",
    "O": "operational",
}


def _describe(schemas: SchemaSet, node: Mapping[str, Any]) -> tuple[str, str, Mapping[str, Any]]:
    """(type, allowed values, the node resolved) of a schema node, in words."""
    allowed: list[str] = []
    name = ""
    resolved: dict[str, Any] = {}
    if "$ref" in node:
        ref = str(node["$ref"])
        target = schemas.resolve(ref)
        if ref.startswith(FORM_PREFIX):
            name = f"form {ref[len(FORM_PREFIX) :]}"
        elif "#/$defs/" in ref:
            name = ref.rsplit("/", 1)[1].replace("_", " ")
        resolved.update(target)
    resolved.update({k: v for k, v in node.items() if k != "$ref"})
    if "anyOf" in resolved and not name:
        parts = [_describe(schemas, option) for option in resolved["anyOf"]]
        kinds = [p[0] for p in parts]
        values = [p[1] for p in parts if p[1]]
        return " or ".join(kinds), "; ".join(values), resolved
    kind = resolved.get("type", "")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = " or ".join(kinds) + (" or null" if "null" in kind else "")
    if kind == "array":
        item_kind, item_allowed, _ = _describe(schemas, resolved.get("items", {}))
        kind = f"list of {item_kind or 'items'}"
        if item_allowed:
            allowed.append(item_allowed)
    elif name:
        kind = name if kind in ("string", "") else f"{name} ({kind})"
    if "enum" in resolved:
        allowed.append(", ".join(code(v) for v in resolved["enum"]))
    if "const" in resolved:
        allowed.append(f"only {code(json.dumps(resolved['const']))}")
    if "format" in resolved:
        allowed.append(f"format {esc(resolved['format'])}")
    elif "pattern" in resolved:
        allowed.append(f"pattern {code(resolved['pattern'])}")
    bounds = [
        f"{label} {resolved[key]}"
        for key, label in (
            ("minimum", "at least"),
            ("maximum", "at most"),
            ("minItems", "at least"),
            ("maxItems", "at most"),
            ("minLength", "length at least"),
            ("maxLength", "length at most"),
        )
        if key in resolved
    ]
    if bounds and kind.startswith("list of"):
        allowed.append("items: " + ", ".join(bounds))
    elif bounds:
        allowed.append(", ".join(bounds))
    return str(kind or "any"), "; ".join(allowed), resolved


def _form_rows(
    schemas: SchemaSet, node: Mapping[str, Any], prefix: str = "", depth: int = 0
) -> list[list[str]]:
    _, _, resolved = _describe(schemas, node)
    if resolved.get("type") == "array" and isinstance(resolved.get("items"), Mapping):
        _, _, resolved = _describe(schemas, resolved["items"])
    props = resolved.get("properties")
    if not isinstance(props, Mapping) or depth > 6:
        return []
    required = set(resolved.get("required", ()))
    rows = []
    for name, sub in props.items():
        kind, allowed, inner = _describe(schemas, sub)
        klass = str(sub.get("x-cmgit-class", inner.get("x-cmgit-class", "")))
        rows.append(
            [
                code(prefix + name),
                esc(kind),
                allowed or "–",
                "yes" if name in required else "no",
                f"{esc(klass)} ({CLASSES[klass]})" if klass in CLASSES else "–",
                md_cell(sub.get("description", inner.get("description", ""))),
            ]
        )
        items = inner.get("items") if inner.get("type") == "array" else None
        nested_prefix = prefix + name + ("[]." if isinstance(items, Mapping) else ".")
        rows += _form_rows(schemas, sub, nested_prefix, depth + 1)
    return rows


def _forms_page(source: Source, forms: Sequence[str]) -> str:
    schemas, flow = source.schemas, source.workflow
    top = []
    for name, prop in schemas.case_properties.items():
        kind, allowed, _ = _describe(schemas, prop)
        is_open = prop.get("x-cmgit") == "open"
        top.append(
            [
                code(name),
                f"[form]({'#' + anchor(name)})" if name in forms else esc(kind),
                allowed or "–",
                "**open**" if is_open else "sealed",
                md_cell(prop.get("description", "")),
            ]
        )
    modes = {
        "single": "one per case; recording it again replaces it",
        "upsert": "a list; a new item is added, or an item updated by its id",
        "append": "a list; items are only ever added",
        "supersede": "a list; a new item supersedes the previous one, which is kept",
    }
    parts = [
        "# Forms",
        "",
        _built_line(source),
        "",
        "A case record has two parts. The **open** fields are stored in clear so that the "
        "workflow, the audit and the statistics can run without any key; they hold codes, "
        "dates of workflow steps and staff IDs, never a name or a narrative, and cmgit "
        "computes them itself. Everything else is **sealed**: every form, with every field "
        "inside it, is encrypted to the staff who may read the case. Which top-level field "
        "is open is declared once, by the annotation `x-cmgit` in `schemas/case.schema.json`."
        "",
        "",
        "Each form field also has a data class: **P** personally identifying (never leaves "
        "the sealed block), **S** sensitive, **O** operational. The class decides what is "
        "removed when a case closed before registration is minimised.",
        "",
        "## The case record",
        "",
        md_table(["Field", "Type", "Allowed values", "Open or sealed", "Description"], top),
    ]
    for form in forms:
        prop = schemas.case_properties[form]
        item = schemas.schemas.get(f"{FORM_PREFIX}{form}", {})
        event = flow.events.get(form)
        mode = schemas.form_mode(form)
        where = (
            f"Recorded with `cmgit record ID {esc(form)}` in "
            f"{', '.join(_link_state(s) for s in event.states)}, by "
            f"{', '.join(code(r) for r in event.by)}."
            if event
            else "Written by cmgit as part of other commands."
        )
        parts += [
            f'<span id="{anchor(form)}"></span>',
            "",
            f"## {esc(item.get('title', form))} ({code(form)})",
            "",
            md_cell(item.get("description", prop.get("description", ""))),
            "",
            f"Kept: **sealed**; {modes.get(mode, esc(mode))}. {where}",
            "",
            md_table(
                ["Field", "Type", "Allowed values", "Required", "Class", "Description"],
                _form_rows(schemas, prop),
            ),
        ]
    return "\n".join(parts)


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
        "is published.",
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


# -- the build ---------------------------------------------------------------------------


@dataclass
class BuildResult:
    out: Path
    commit: str
    pages: int
    files: int
    removed: int
    warnings: list[str]


def default_out(root: Path) -> Path:
    return root / DEFAULT_OUT


def build(
    directory: Path | None,
    out: Path | None,
    *,
    today: dt.date,
    progress: Progress = SILENT,
) -> BuildResult:
    """Build the site of the repository around ``directory`` into ``out``.

    The output appears only when the whole build has passed its checks: it is built in a
    temporary folder beside ``out`` and moved into place at the end.
    """
    source = open_source(directory)
    source.progress = progress
    root = source.root
    target = (out if out is not None else default_out(root)).absolute()
    _check_out(root, target)
    mkdocs_yml = root / MKDOCS_FILE
    docs_source = root / SITE_DIR
    if not mkdocs_yml.is_file() or not docs_source.is_dir():
        raise NotACaseRepository(
            f"no {MKDOCS_FILE} or {SITE_DIR}/ in the repository",
            hint="a case repository made by cmgit init has both",
        )
    dirty = bool(source.git.status(SITE_DIR, MKDOCS_FILE))
    with progress.task("Reading cases", 2) as advance:
        rep = report(source, today)
        advance(1)
        pages = reference_pages(source)
        pages["statistics/index.md"] = statistics_page(source, rep, today)
        advance(1)
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cmgit-site-")))
        docs = work / "docs"
        _copy_docs(docs_source, docs)
        for name, text in pages.items():
            path = docs / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        staging = Path(tempfile.mkdtemp(prefix=".cmgit-site-", dir=target.parent))
        stack.callback(shutil.rmtree, staging, True)
        footer = f"Built from commit {source.head[:12]}, figures as of {today.isoformat()}" + (
            ", with uncommitted changes to the SOP pages" if dirty else ""
        )
        with progress.task("Building the site", 1) as advance:
            warnings = run_mkdocs(mkdocs_yml, docs, staging, footer)
            advance(1)
        with progress.task("Checking the output", 1) as advance:
            removed = check_output(staging, set(source.column("case_id")))
            advance(1)
        files = sum(1 for p in staging.rglob("*") if p.is_file())
        html_pages = sum(1 for p in staging.rglob("*.html"))
        _replace(staging, target)
    _exclude_from_git(source.git, target)
    return BuildResult(target, source.head, html_pages, files, removed, warnings)


def _check_out(root: Path, target: Path) -> None:
    """Refuse an output folder whose replacement would destroy something else."""
    resolved = target.resolve()
    top = root.resolve()
    forbidden = [top, top / SITE_DIR, top / ".git", top / ids.RECORDS_DIR, top / SCHEMAS_DIR]
    if (
        resolved in forbidden
        or resolved in top.parents
        or any(f in resolved.parents for f in forbidden[1:])
    ):
        raise UsageError(
            "the output folder would overwrite the repository or its sources",
            hint=f"use a new folder such as {DEFAULT_OUT}/",
        )
    if target.is_symlink() or resolved.exists():
        if target.is_symlink() or not resolved.is_dir():
            raise UsageError("the output path exists and is not a folder")
        if any(resolved.iterdir()) and not (resolved / "index.html").is_file():
            raise UsageError(
                "the output folder is not empty and holds no earlier site build",
                hint="choose a new or empty folder",
            )


def _exclude_from_git(git: Git, target: Path) -> None:
    """An output folder inside the work tree goes into the clone's own exclude list
    (.git/info/exclude, never committed), so the built site is not committed by accident.
    """
    try:
        rel = target.resolve().relative_to(git.root.resolve()).as_posix()
    except ValueError:
        return
    line = f"/{rel}/"
    exclude = git.git_dir / "info" / "exclude"
    try:
        present = exclude.read_text(encoding="utf-8").splitlines() if exclude.exists() else []
        if line not in present:
            exclude.parent.mkdir(parents=True, exist_ok=True)
            with exclude.open("a", encoding="utf-8") as handle:
                if present and present[-1] != "":
                    handle.write("\n")
                handle.write(line + "\n")
    except OSError:
        pass  # only a convenience: the build itself has succeeded


def _copy_docs(source: Path, target: Path) -> None:
    """Copy the SOP pages and assets; links and special files are refused, not followed."""
    for dirpath, dirnames, filenames in os.walk(source, followlinks=False):
        here = Path(dirpath)
        rel = here.relative_to(source)
        (target / rel).mkdir(parents=True, exist_ok=True)
        for name in [*dirnames, *filenames]:
            info = os.lstat(here / name)
            if stat.S_ISLNK(info.st_mode):
                raise UsageError(
                    f"{SITE_DIR}/{(rel / name).as_posix()} is a symbolic link",
                    hint="the site is built from regular files only",
                )
            if name in filenames and not stat.S_ISREG(info.st_mode):
                raise UsageError(f"{SITE_DIR}/{(rel / name).as_posix()} is not a regular file")
        for name in filenames:
            shutil.copyfile(here / name, target / rel / name)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _quiet_mkdocs() -> Iterator[_Collect]:
    logger = logging.getLogger("mkdocs")
    saved = (logger.handlers[:], logger.propagate, logger.level)
    handler = _Collect()
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    previous = os.environ.get("NO_MKDOCS_2_WARNING")
    os.environ["NO_MKDOCS_2_WARNING"] = "1"
    try:
        yield handler
    finally:
        logger.handlers, logger.propagate, level = saved
        logger.setLevel(level)
        if previous is None:
            os.environ.pop("NO_MKDOCS_2_WARNING", None)


def run_mkdocs(config_file: Path, docs: Path, site_dir: Path, footer: str) -> list[str]:
    """The MkDocs-Material build, in-process, from the repository's mkdocs.yml.

    Three things are set here whatever mkdocs.yml says: the folders; the offline plugin,
    so that search works from files as well as over HTTP; and the iframe-worker shim it
    needs, from the vendored copy under site/assets/ (the plugin would otherwise add a
    CDN address). Every page's footer names the commit.
    """
    from mkdocs.commands.build import build as mkdocs_build
    from mkdocs.config import load_config
    from mkdocs.exceptions import MkDocsException

    with _quiet_mkdocs() as log:
        try:
            with config_file.open("rb") as handle:
                cfg = load_config(
                    handle,
                    config_file_path=str(config_file),
                    docs_dir=str(docs),
                    site_dir=str(site_dir),
                )
            polyfills = [
                p for p in cfg.extra.get("polyfills", []) or [] if "iframe-worker" not in str(p)
            ]
            if (docs / SHIM).is_file():
                polyfills.append(SHIM)
                _add_offline(cfg)
            cfg.extra["polyfills"] = polyfills
            if (docs / STYLESHEET).is_file() and STYLESHEET not in [str(s) for s in cfg.extra_css]:
                cfg.extra_css.append(STYLESHEET)
            owner = cfg["copyright"]
            cfg["copyright"] = f"{owner} · {footer}" if owner else footer
            mkdocs_build(cfg)
        except (MkDocsException, OSError, ValueError) as exc:
            raise CmgitError(
                f"the site build failed: {type(exc).__name__}",
                hint="run mkdocs build in the repository to see the details",
            ) from None
    return [m for m in log.messages if not m.startswith("Config value")]


def _add_offline(cfg: Any) -> None:
    if any(name.endswith("offline") for name in cfg.plugins):
        return
    try:
        from material.plugins.offline.plugin import (  # type: ignore[import-untyped]
            OfflinePlugin,
        )
    except ImportError:  # pragma: no cover - another theme: search then needs HTTP
        return
    plugin = OfflinePlugin()
    errors, _ = plugin.load_config({})
    if not errors:
        cfg.plugins["material/offline"] = plugin


@dataclass
class Finding:
    path: str
    problem: str


def scan_file(rel: str, data: bytes, case_ids: set[str]) -> list[str]:
    """What in one built file must never be published."""
    problems = []
    if rel.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            problems.append("a compressed file that cannot be read")
    name = rel.rsplit("/", 1)[-1]
    allowed = {EXAMPLE_CASE_ID} - case_ids
    if _CASE_ID_BYTES.search(name.encode("utf-8", "replace")):
        problems.append("a file named like a case record")
    if any(marker in data for marker in _AGE_MARKERS):
        problems.append("an age-encrypted message")
    if _RECORD_LINE.search(data):
        problems.append("a line shaped like a case record (case_id:)")
    shaped = {m.decode("ascii") for m in _CASE_ID_BYTES.findall(data)} - allowed
    if shaped:
        problems.append("text shaped like a case number")
    return problems


def check_output(site_dir: Path, case_ids: set[str]) -> int:
    """Check every built file; fail if any must not be published, else drop the file types
    that are not allow-listed. Returns how many files were dropped."""
    findings: list[Finding] = []
    drop = []
    for path in sorted(site_dir.rglob("*")):
        rel = path.relative_to(site_dir).as_posix()
        if path.is_symlink() or (not path.is_file() and not path.is_dir()):
            findings.append(Finding(rel, "not a regular file"))
            continue
        if path.is_dir():
            continue
        data = path.read_bytes()
        findings += [Finding(rel, p) for p in scan_file(rel, data, case_ids)]
        suffix = path.name.rsplit(".", 1)[-1].lower() if "." in path.name else ""
        if suffix not in ALLOWED_TYPES:
            drop.append(path)
        elif suffix in ("html", "css") and fetches_from_the_web(data.decode("utf-8", "replace")):
            findings.append(Finding(rel, "loads a script, style, font or image from the web"))
    if findings:
        shown = [f"{_safe_path(f.path)}: {f.problem}" for f in findings[:10]]
        if len(findings) > 10:
            shown.append(f"... and {len(findings) - 10} more")
        raise UnsafeOutput(
            "the built site holds what must never be published; nothing was published",
            problems=shown,
            hint="remove the files named from site/ (a copy of a record or of an encrypted "
            "block has no place there) and build again",
        )
    for path in drop:
        path.unlink()
    for folder in sorted((p for p in site_dir.rglob("*") if p.is_dir()), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only empty ones go
    return len(drop)


def _safe_path(rel: str) -> str:
    return re.sub(r"[^A-Za-z0-9._/-]", "?", rel)[:120]


def _replace(staging: Path, target: Path) -> None:
    """Move the checked build into place; an earlier build is replaced whole."""
    os.chmod(staging, 0o755)  # noqa: S103 - a published web site is world-readable
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=".cmgit-old-", dir=target.parent))
        os.replace(target, old / "site")
        try:
            os.replace(staging, target)
        except OSError:
            os.replace(old / "site", target)
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)


__all__ = [
    "ALLOWED_TYPES",
    "BuildResult",
    "Report",
    "Source",
    "UnsafeOutput",
    "build",
    "check_output",
    "open_source",
    "reference_pages",
    "statistics_page",
    "statistics_report",
]
