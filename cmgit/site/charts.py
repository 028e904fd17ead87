"""Charts as inline SVG, drawn from values alone: grouped bars and median days for the
statistics tables, and the state diagram of the workflow for the reference pages.

Inline SVG needs nothing fetched and no script, so the charts work offline.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import stats
from ..workflow import CLOSED, Workflow
from .markup import esc

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
