"""The reference pages: the states (with the state diagram), transitions, guards and forms,
written from the workflow and schema files of the case repository, so that the procedure
the SOP pages describe and the one the tool enforces cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..schema import FORM_PREFIX, SchemaSet
from .charts import state_diagram
from .directory import DIRECTORY_PAGE, directory_page
from .markup import anchor, code, esc, md_cell, md_table
from .source import Source


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
            "- [Service directory](providers.md): the agencies of `providers.yaml`, their "
            "services and information-sharing agreements.",
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
    pages[DIRECTORY_PAGE] = directory_page(source)
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
            + (f", version {guard.version}" if guard.version > 1 else "")
        )
        rows.append(
            [
                f'<span id="{anchor(guard.code)}"></span>**{esc(guard.code)}**',
                severity.get(guard.severity, esc(guard.severity))
                + (
                    f" (reason codes: {', '.join(map(code, guard.override_reasons))})"
                    if guard.override_reasons
                    else ""
                ),
                md_cell(guard.summary),
                md_cell(guard.refusal) if guard.refusal else "–",
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
                [
                    "Guard",
                    "When it fails",
                    "Rule",
                    "What a refusal says",
                    "How it is checked",
                    "Where it applies",
                ],
                rows,
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
