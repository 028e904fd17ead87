"""The forms a person writes, and a template of each: read from the schemas and the
workflow in force, so a programme's own forms and moves are described as they are.

`catalogue` lists the forms with the commands that take each from a file: `cmgit new`
for the forms a case opens with, `cmgit record` for the workflow's events, `cmgit move`
for the moves whose guards read the form, and which fields cmgit fills in itself (the
id of a repeated form's item, and what the effects of a move write). `template` renders
one form as commented YAML: every field with its type, allowed values, whether it is
required and an example value that the schema accepts.

Pure: the schemas come in as a `CaseSchema`, the procedure as its `Workflow`, and the
day the example dates take as an argument.
"""

from __future__ import annotations

import difflib
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from . import yamlio
from .workflow import (
    FILLED_BY_EFFECT,
    NEW_CASE_FORMS,
    NEW_EPISODE,
    REOPEN_FORM,
    CaseSchema,
    Guard,
    Transition,
    Workflow,
)

FILLED = "filled in by cmgit"
# The form cmgit writes whole when a case opens or changes hands (`cmgit assign`).
ASSIGNMENT_FORM = "assignment"
# What each named check reads of the sealed forms: guards written as a schema name the
# forms themselves, a named check is code (cmgit.guards) and says it here.
CHECK_READS: dict[str, tuple[str, ...]] = {
    "criteria_met": ("registration",),
    "fresh_consent": ("consent",),
    "assessment_opens_case": ("assessment",),
    "assessment_no_concern": ("assessment",),
    "comprehensive_after_immediate": ("assessment",),
    "plan_complete": ("case_plan", "assessment"),
    "plan_participation": ("case_plan",),
    "plan_signatures": ("case_plan",),
    "plan_kept_as_approved": ("case_plan",),
    "bid_for_durable_solution": ("case_plan", "bid"),
    "plan_referral_consent": ("case_plan", "consent"),
    "referral_consent": ("referral", "consent"),
    "authorised_by_actor": ("closure",),
    "objectives_met": ("review", "case_plan"),
    "closure_discussed": ("closure",),
    "turned_18": ("closure", "registration"),
    "turns_18_within_notice": ("closure", "registration"),
    "notice_period": ("closure",),
    "conference_decided_closure": ("closure", "case_conference"),
    "monitoring_planned": ("post_closure_monitoring",),
    "monitoring_done": ("post_closure_monitoring", "follow_up"),
    "reopen_recorded": (REOPEN_FORM,),
    "transfer_complete": ("transfer", "consent"),
    "inaccessible": ("follow_up",),
    "review_outcome": ("review",),
    "closure_reason_matches": ("closure",),
    "follow_up_dates": ("follow_up",),
}
# Example values of the shared definitions (common.schema.json) whose pattern no word
# explains; a schema's own `examples` come first, and any other pattern is matched
# against CANDIDATES.
EXAMPLE_ITEM = "7K2M9QX4"
DEF_EXAMPLES = {
    "staff_id": "cw-001",
    "staff_or_external": "cw-001",
    "team_id": "north",
    "case_id": "CP-" + EXAMPLE_ITEM,
    "local_id": "1",
}
CANDIDATES = ("1", "cw-001", "external", "A1", "CP-" + EXAMPLE_ITEM, "item-" + EXAMPLE_ITEM)
TEXT_EXAMPLE = "write here"
WIDTH = 88  # comment lines wrap here, as a text editor shows them


@dataclass(frozen=True)
class FormInfo:
    """One form: what it is, whether it holds a list of items, and how it is recorded."""

    name: str
    title: str
    description: str
    repeated: bool
    mode: str  # how an item is merged in (x-cmgit-mode): single, append, upsert, supersede
    id_field: str | None
    filled: tuple[str, ...]  # top-level fields cmgit fills in itself
    opens_case: bool  # `cmgit new --from` takes it
    record_states: tuple[str, ...]  # where `cmgit record` takes it (an event)
    move_targets: tuple[str, ...]  # the moves whose guards read it, by target state

    @property
    def written_by_cmgit(self) -> bool:
        """No command takes it from a file: cmgit writes it whole."""
        return not (self.opens_case or self.record_states or self.move_targets)

    def commands(self) -> list[str]:
        found = []
        if self.opens_case:
            found.append("cmgit new --from FILE")
        if self.record_states:
            found.append(f"cmgit record ID {self.name} --from FILE")
        if self.move_targets:
            found.append(f"cmgit move ID {'|'.join(self.move_targets)} --from FILE")
        if self.name == ASSIGNMENT_FORM and self.written_by_cmgit:
            found.append("cmgit assign ID STAFF --reason CODE")
        return found

    def as_dict(self) -> dict[str, Any]:
        return {
            "form": self.name,
            "title": self.title,
            "description": self.description,
            "repeated": self.repeated,
            "mode": self.mode,
            "id_field": self.id_field,
            "filled_by_cmgit": list(self.filled),
            "commands": self.commands(),
            "record_states": list(self.record_states),
            "move_to": list(self.move_targets),
        }


# -- which forms there are, and how each is recorded -------------------------------------


def form_names(schema: CaseSchema) -> list[str]:
    """The forms people write, in the case schema's order (system ones left out)."""
    return [f for f in schema.sealed_fields if schema.form_mode(f) != "system"]


def form_schema(schema: CaseSchema, form: str) -> Mapping[str, Any]:
    """The schema of one form, or of one item of a repeated form, resolved."""
    node = schema.case_properties[form]
    node = node.get("items", node)
    ref = node.get("$ref")
    return schema.resolve(ref) if isinstance(ref, str) else node


def guard_reads(guard: Guard, forms: Sequence[str]) -> tuple[str, ...]:
    """The forms a guard reads: those its schema condition names at the top of the
    record, or those its named check reads."""
    if guard.schema is not None:
        named = _top_level_names(guard.schema)
        return tuple(f for f in forms if f in named)
    return tuple(f for f in CHECK_READS.get(guard.check or "", ()) if f in forms)


def transition_reads(
    flow: Workflow, transition: Transition, forms: Sequence[str], reason: str | None = None
) -> list[str]:
    """The forms a move reads, in the order of its guards; a reopening move's own form
    first. With a reason, the guards of that reason only; without, of every reason."""
    codes = list(transition.guards)
    for code_reason, extra in (transition.reasons or {}).items():
        if reason is None or code_reason == reason:
            codes += extra
    found: list[str] = []
    if NEW_EPISODE in transition.effects and REOPEN_FORM in forms:
        found.append(REOPEN_FORM)
    for code in codes:
        found += guard_reads(flow.guards[code], forms)
    return list(dict.fromkeys(found))


def filled_fields(schema: CaseSchema, flow: Workflow, form: str) -> tuple[str, ...]:
    """The top-level fields of ``form`` cmgit fills in itself under this workflow."""
    node = form_schema(schema, form)
    fields: set[str] = set()
    if "items" in schema.case_properties[form]:
        fields.add(schema.form_id_field(form) or f"{form}_id")
    for transition in flow.transitions.values():
        for effect in transition.effects:
            fields |= set(FILLED_BY_EFFECT.get(effect, {}).get(form, ()))
    return tuple(name for name in node.get("properties", {}) if name in fields)


def catalogue(schema: CaseSchema, flow: Workflow) -> dict[str, FormInfo]:
    """Every form people write, with how it is recorded, in the case schema's order."""
    names = form_names(schema)
    targets: dict[str, list[str]] = {name: [] for name in names}
    for transition in flow.transitions.values():
        for name in transition_reads(flow, transition, names):
            if transition.target not in targets[name]:
                targets[name].append(transition.target)
    found = {}
    for name in names:
        node = form_schema(schema, name)
        event = flow.events.get(name)
        repeated = "items" in schema.case_properties[name]
        info = FormInfo(
            name=name,
            title=str(node.get("title", name)),
            description=str(node.get("description", "")),
            repeated=repeated,
            mode=schema.form_mode(name),
            id_field=(schema.form_id_field(name) or f"{name}_id") if repeated else None,
            filled=filled_fields(schema, flow, name),
            opens_case=name in NEW_CASE_FORMS,
            record_states=event.states if event else (),
            move_targets=tuple(sorted(targets[name], key=list(flow.states).index)),
        )
        if info.written_by_cmgit:
            info = replace(info, filled=tuple(node.get("properties", {})))
        found[name] = info
    return found


def nearest(name: str, names: Iterable[str]) -> str | None:
    """The form name closest to one mistyped, if any is close."""
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    return close[0] if close else None


# -- examples -------------------------------------------------------------------------


def example(schema: CaseSchema, form: str, today: str, *, optional: bool = False) -> Any:
    """A value of one form (one item of a repeated form) that its schema accepts: its
    required fields, or with ``optional`` every field, the ones cmgit fills in too."""
    return _Examples(schema, form, today, optional).value(form_schema(schema, form), form)


class _Examples:
    def __init__(self, schema: CaseSchema, form: str, today: str, optional: bool):
        self.schema = schema
        self.form = form
        self.today = today
        self.optional = optional
        self.forms = sorted(form_names(schema), key=len, reverse=True)

    def value(self, node: Mapping[str, Any], name: str) -> Any:
        node = _merged(self.schema, node)
        kind = _type(node)
        if node.get("examples"):
            return node["examples"][0]
        if "const" in node:
            return node["const"]
        if "enum" in node:
            return node["enum"][0]
        if kind == "object":
            required = set(node.get("required", ()))
            return {
                key: self.value(sub, key)
                for key, sub in node.get("properties", {}).items()
                if self.optional or key in required
            }
        if kind == "array":
            return [self.value(node.get("items", {}), name)]
        if kind == "boolean":
            return False  # an example claims nothing was done or seen
        if kind in ("integer", "number"):
            return int(node.get("minimum", 1))
        return self.string(node, name)

    def string(self, node: Mapping[str, Any], name: str) -> str:
        definition = _definition(node)
        if node.get("format") == "date":
            return self.today
        if definition == "item_id":
            return f"{self.item_form(name)}-{EXAMPLE_ITEM}"
        if definition in DEF_EXAMPLES:
            return DEF_EXAMPLES[definition]
        pattern = node.get("pattern")
        if pattern:
            for candidate in (*CANDIDATES, self.today):
                if re.search(pattern, candidate):
                    return candidate
        return TEXT_EXAMPLE

    def item_form(self, name: str) -> str:
        """The form an item id names: the one the field is named after (consent_ref,
        based_on_assessment_id), else the form being written."""
        return next((f for f in self.forms if f in name), self.form)


# -- the template ---------------------------------------------------------------------


def template(
    schema: CaseSchema, info: FormInfo, today: str, *, commands: Sequence[str] = ()
) -> str:
    """One form as commented YAML: required fields with an example value, optional ones
    commented out, and the fields cmgit fills in named and left out. ``commands`` says
    how to record it (by default, every command that takes it)."""
    node = form_schema(schema, info.name)
    renderer = _Renderer(schema, info, today)
    head = [f"{info.title}: {info.description}" if info.description else info.title]
    if info.written_by_cmgit:
        head.append(f"Every field is {FILLED}: " + "; ".join(info.commands() or ["cmgit"]) + ".")
    else:
        head.append("Record it with: " + ", or ".join(commands or info.commands()) + ".")
        if info.repeated:
            head.append(f"The file holds one {info.name} item; cmgit adds it to the list.")
        head.append(
            "Required fields hold an example to replace; optional ones are commented out "
            '(remove the "# " to give one); cmgit writes the fields it fills in itself.'
        )
    lines = [line for text in head for line in _comment(text, "")]
    lines.append(f"{info.name}:")
    lines += renderer.fields(node, "  ", top=True)
    return "\n".join(lines) + "\n"


class _Renderer:
    def __init__(self, schema: CaseSchema, info: FormInfo, today: str):
        self.schema = schema
        self.info = info
        self.examples = _Examples(schema, info.name, today, optional=False)

    def fields(self, node: Mapping[str, Any], indent: str, *, top: bool = False) -> list[str]:
        node = _merged(self.schema, node)
        required = set(node.get("required", ()))
        lines: list[str] = []
        for name, sub in node.get("properties", {}).items():
            if top and name in self.info.filled:
                lines.append(f"{indent}# {name}: {self._filled_note(name)}")
                continue
            lines += _comment(self.describe(sub, name, name in required), indent)
            body = self.value(sub, name, indent)
            if name not in required:
                body = [f"{indent}# {line[len(indent) :]}" for line in body]
            lines += body
        return lines

    def _filled_note(self, name: str) -> str:
        info = self.info
        if name == info.id_field and not info.written_by_cmgit and info.mode != "append":
            return f"{FILLED}; to change an item already recorded, give its id here"
        return FILLED

    def value(self, node: Mapping[str, Any], name: str, indent: str) -> list[str]:
        merged = _merged(self.schema, node)
        kind = _type(merged)
        if kind == "object" and "enum" not in merged:
            return [f"{indent}{name}:", *self.fields(merged, indent + "  ")]
        if kind == "array":
            items = _merged(self.schema, merged.get("items", {}))
            if _type(items) == "object" and "enum" not in items:
                inner = indent + "    "
                body = self.fields(items, inner)
                body[0] = f"{indent}  - {body[0][len(inner) :]}"
                return [f"{indent}{name}:", *body]
            return [f"{indent}{name}:", f"{indent}  - {self.scalar(items, name)}"]
        return [f"{indent}{name}: {self.scalar(merged, name)}"]

    def scalar(self, node: Mapping[str, Any], name: str) -> str:
        return yamlio.scalar(self.examples.value(node, name))

    def describe(self, node: Mapping[str, Any], name: str, required: bool) -> str:
        own = str(node.get("description", "")).strip()
        need = "Required" if required else "Optional"
        return f"{own} {need}, {self.kind(node, name)}.".strip()

    def kind(self, node: Mapping[str, Any], name: str) -> str:
        merged = _merged(self.schema, node)
        kind = _type(merged)
        if "const" in merged:
            return f"always {yamlio.scalar(merged['const'])}"
        if "enum" in merged:
            return "one of: " + ", ".join(str(v) for v in merged["enum"])
        if kind == "object":
            return "the fields below"
        if kind == "array":
            items = _merged(self.schema, merged.get("items", {}))
            least = merged.get("minItems", 0)
            head = f"a list of at least {least}" if least > 1 else "a list"
            if _type(items) == "object" and "enum" not in items:
                return f"{head} of items with the fields below (one example item)"
            return f"{head}, each {self.kind(items, name)}"
        if kind == "boolean":
            return "true or false"
        if kind in ("integer", "number"):
            low, high = merged.get("minimum"), merged.get("maximum")
            whole = "a whole number" if kind == "integer" else "a number"
            if low is not None and high is not None:
                return f"{whole} from {low} to {high}"
            return f"{whole} of at least {low}" if low is not None else whole
        example = self.examples.value(merged, name)
        if merged.get("format") == "date":
            return f"a date such as {example}"
        words = _definition_words(merged) or "text"
        return f"{words}, such as {example}" if merged.get("pattern") else words


def _comment(text: str, indent: str) -> list[str]:
    return textwrap.wrap(
        text,
        width=WIDTH,
        initial_indent=f"{indent}# ",
        subsequent_indent=f"{indent}# ",
        break_long_words=False,
        break_on_hyphens=False,
    )


# -- reading schemas ------------------------------------------------------------------


def _merged(schema: CaseSchema, node: Mapping[str, Any]) -> Mapping[str, Any]:
    """A schema node with what its $ref points to, its own keywords winning; the
    definition's name is kept (as $def) for the examples."""
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return node
    target = _merged(schema, schema.resolve(ref))
    own = {k: v for k, v in node.items() if k != "$ref"}
    if "#/" not in ref:  # a whole schema (a form), not a shared definition
        return {**target, **own}
    return {
        **target,
        **own,
        "$def": ref.rpartition("/")[2],
        "$def-description": target.get("description"),
    }


def _definition(node: Mapping[str, Any]) -> str | None:
    value = node.get("$def")
    return str(value) if value else None


def _definition_words(node: Mapping[str, Any]) -> str:
    """What a shared definition says its values are, as words to follow a colon."""
    text = str(node.get("$def-description") or "").strip().rstrip(".")
    text = text.split(":")[0] if ", e.g." in text else text
    return text[:1].lower() + text[1:]


def _type(node: Mapping[str, Any]) -> str:
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind is None:
        kind = "object" if "properties" in node else "array" if "items" in node else "string"
    return str(kind)


def _top_level_names(condition: Mapping[str, Any]) -> set[str]:
    """The top-level fields a schema condition names (required or constrained), through
    its combinators."""
    names = set(condition.get("required", ())) | set(condition.get("properties", {}))
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in condition.get(key, ()):
            names |= _top_level_names(sub)
    for key in ("if", "then", "else", "not"):
        if isinstance(condition.get(key), Mapping):
            names |= _top_level_names(condition[key])
    return names
