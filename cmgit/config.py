"""A case repository's configuration as committed: schemas, settings, staff registry and
the workflow. Read from git objects, never from the work tree, so an uncommitted edit of
`staff.yaml` cannot grant anyone anything; and free of any key, so the site build and the
audit read it exactly as the store does. Which version of each part is in force (its
last change that audit finds valid) is the audit's to judge.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import caches, yamlio
from .errors import NotACaseRepository, SchemaError
from .history import Git
from .registry import Registry
from .schema import SETTINGS, STAFF, WORKFLOW, SchemaSet
from .workflow import Workflow, WorkflowError

STAFF_FILE = "staff.yaml"
SETTINGS_FILE = "settings.yaml"
SCHEMAS_DIR = "schemas"
WORKFLOW_FILE = "schemas/workflow.yaml"
MAX_CONFIG_BYTES = 4 * 1024 * 1024
CONFIG_CACHE = "config"
# The parts of the configuration, each judged apart: a commit that validly changes one of
# them brings that part into force, and leaves the others as they were.
PARTS = (SCHEMAS_DIR, STAFF_FILE, SETTINGS_FILE)


def load_yaml(
    data: bytes, schemas: SchemaSet, schema: Mapping[str, Any], *, what: str, limit: int
) -> Any:
    return schemas.coerce(yamlio.load(data, what=what, max_bytes=limit), schema, what=what)


@dataclass(frozen=True)
class Config:
    """A case repository's configuration as committed in one commit."""

    schemas: SchemaSet
    settings: dict[str, Any]
    registry: Registry
    workflow: Workflow


def read_config(git: Git, commit: str) -> Config:
    """Schemas, settings, staff registry and workflow as of ``commit``."""
    return read_parts(git, (commit, commit, commit))


def part_ids(git: Git, sources: Sequence[str]) -> tuple[str, ...]:
    """The tree entry of each part of the configuration, from the commit given for it (in
    the order of PARTS): equal ids, equal configuration."""
    return tuple(
        str(git.objects.tree(git.objects.commit_tree(commit)).get(part))
        for part, commit in zip(PARTS, sources, strict=True)
    )


def read_parts(git: Git, sources: Sequence[str]) -> Config:
    """The configuration made of each part (PARTS) as of the commit given for it: the
    configuration in force can be older, part by part, than the one committed.

    The documents, once read and validated, are remembered by the ids of the objects they
    came from, so a command on an unchanged configuration parses no YAML at all.
    """
    key = part_ids(git, sources)
    docs = caches.remembered(git, CONFIG_CACHE, key)
    if docs is None:
        docs = _read_documents(git, *sources)
        caches.remember(git, CONFIG_CACHE, key, docs)
    schema_docs, settings, staff, flow = docs
    return Config(SchemaSet(schema_docs), settings, Registry.from_doc(staff), _workflow(flow))


def _read_documents(git: Git, schemas_at: str, staff_at: str, settings_at: str) -> tuple[Any, ...]:
    """Every configuration document, each part as of its own commit, parsed and validated."""
    paths = [p for p in git.files_under(schemas_at, SCHEMAS_DIR) if p.endswith(".json")]
    files = git.read_paths(schemas_at, [*paths, WORKFLOW_FILE])
    files |= git.read_paths(staff_at, [STAFF_FILE])
    files |= git.read_paths(settings_at, [SETTINGS_FILE])
    schema_docs = {doc["$id"]: doc for doc in (json.loads(files[p] or b"{}") for p in paths)}
    schemas = SchemaSet(schema_docs)
    settings = read_document(files[SETTINGS_FILE], schemas, SETTINGS, SETTINGS_FILE)
    staff = read_document(files[STAFF_FILE], schemas, STAFF, STAFF_FILE)
    flow = workflow_document(files[WORKFLOW_FILE], schemas)
    _workflow(flow)  # refuse an inconsistent workflow before remembering it
    return schema_docs, settings, staff, flow


def read_document(data: bytes | None, schemas: SchemaSet, schema_id: str, name: str) -> Any:
    if data is None:
        raise NotACaseRepository(f"{name} is missing from the committed tree")
    schema = schemas.schemas[schema_id]
    doc = load_yaml(data, schemas, schema, what=name, limit=MAX_CONFIG_BYTES)
    schemas.validate(doc, schema_id, what=name)
    return doc


def load_workflow(data: bytes | None, schemas: SchemaSet) -> Workflow:
    """The procedure from its data file, validated and checked for dangling names."""
    return _workflow(workflow_document(data, schemas))


def workflow_document(data: bytes | None, schemas: SchemaSet) -> Any:
    """The workflow data file, parsed and validated against its schema."""
    if data is None:
        raise NotACaseRepository(f"{WORKFLOW_FILE} is missing from the committed tree")
    what = "workflow data"
    doc = yamlio.load(data, what=what, max_bytes=MAX_CONFIG_BYTES)
    # Guard conditions are JSON Schema themselves: no schema can type them, so their
    # unquoted scalars take YAML's core types (true, 3, null).
    guards = doc.get("guards") if isinstance(doc, dict) else None
    for guard in guards.values() if isinstance(guards, dict) else ():
        for key in ("schema", "params"):
            if isinstance(guard, dict) and key in guard:
                guard[key] = yamlio.core(guard[key])
    doc = schemas.coerce(doc, schemas.schemas[WORKFLOW], what=what)
    schemas.validate(doc, WORKFLOW, what=what)
    return doc


def _workflow(doc: Any) -> Workflow:
    try:
        return Workflow(doc)
    except WorkflowError as exc:
        raise SchemaError(
            f"workflow data is inconsistent: {exc}", hint=f"correct {WORKFLOW_FILE}"
        ) from None
