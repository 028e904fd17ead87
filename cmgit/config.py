"""A case repository's configuration as committed: schemas, settings, staff registry and
the workflow. Read from git objects, never from the work tree, so an uncommitted edit of
`staff.yaml` cannot grant anyone anything; and free of any key, so the site build and the
audit read it exactly as the store does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import caches, signing, yamlio
from .errors import CmgitError, NotACaseRepository, RepositoryError, SchemaError
from .history import Git, parse_trailers
from .registry import PROGRAMME_MANAGER, Registry
from .schema import SETTINGS, STAFF, WORKFLOW, SchemaSet
from .workflow import Workflow, WorkflowError

STAFF_FILE = "staff.yaml"
SETTINGS_FILE = "settings.yaml"
SCHEMAS_DIR = "schemas"
WORKFLOW_FILE = "schemas/workflow.yaml"
MAX_CONFIG_BYTES = 4 * 1024 * 1024
CONFIG_CACHE = "config"
CONFIG_ACTIONS = frozenset({"staff-add", "staff-update", "staff-deactivate", "settings-set"})
TRUST_FILE = "config-trusted"


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
    """Schemas, settings, staff registry and workflow as of ``commit``.

    The documents, once read and validated, are remembered by the ids of the objects they
    came from, so a command on an unchanged configuration parses no YAML at all.
    """
    root = git.objects.tree(git.objects.commit_tree(commit))
    key = tuple(str(root.get(name)) for name in (SCHEMAS_DIR, STAFF_FILE, SETTINGS_FILE))
    docs = caches.remembered(git, CONFIG_CACHE, key)
    if docs is None:
        docs = _read_documents(git, commit)
        caches.remember(git, CONFIG_CACHE, key, docs)
    schema_docs, settings, staff, flow = docs
    return Config(SchemaSet(schema_docs), settings, Registry.from_doc(staff), _workflow(flow))


def _read_documents(git: Git, commit: str) -> tuple[Any, ...]:
    """Every configuration document of ``commit``, parsed and validated."""
    paths = [p for p in git.files_under(commit, SCHEMAS_DIR) if p.endswith(".json")]
    files = git.read_paths(commit, [*paths, STAFF_FILE, SETTINGS_FILE, WORKFLOW_FILE])
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


def check_trusted(git: Git, head: str, schemas: SchemaSet, key: str) -> None:
    """Refuse to seal for a staff registry or settings that a programme manager did not
    commit through cmgit (signed, where the settings require it).

    Recipients come from these files, so a plain-git edit of them (say, an outsider
    added as a supervisor) must not make cmgit encrypt case records to new keys. The
    last commit that changed them is judged against the registry and settings of its
    parent, as `cmgit audit` judges it; a result is remembered by the files' object ids
    (KEY), so this costs one history walk per configuration change.
    """
    cache = git.git_dir / "cmgit" / TRUST_FILE
    if cache.is_file() and cache.read_text().strip() == key:
        return
    # Schemas and workflow are changed with plain git after review (no cmgit command
    # exists for them) and name no recipient: only the two files that do are judged.
    found = git.text("log", "-1", "--format=%H %P", head, "--", STAFF_FILE, SETTINGS_FILE).split()
    if len(found) > 1:  # the root commit (init) is the trust root
        oid, parent = found[0], found[1]
        author, _, message = git.text("log", "-1", "--format=%an%x1f%B", oid).partition("\x1f")
        trailers = parse_trailers(message)
        actor_id = (trailers.get("Cmgit-Actor") or [""])[-1]
        action = (trailers.get("Cmgit-Action") or [""])[-1]
        try:
            files = git.read_paths(parent, [STAFF_FILE, SETTINGS_FILE])
            registry = Registry.from_doc(
                read_document(files[STAFF_FILE], schemas, STAFF, STAFF_FILE)
            )
            settings = read_document(files[SETTINGS_FILE], schemas, SETTINGS, SETTINGS_FILE)
        except CmgitError:
            registry, settings = Registry([]), {}
        member = registry.staff.get(actor_id)
        trusted = (
            action in CONFIG_ACTIONS
            and member is not None
            and member.active
            and member.role == PROGRAMME_MANAGER
            and author == member.id
        )
        if trusted and member is not None and settings.get("require_signed_commits"):
            payload, armored = git.objects.signed_commit(oid)
            try:
                trusted = armored is not None and (
                    signing.verify(payload, armored) == member.signing_key
                )
            except signing.BadSignature:
                trusted = False
        if not trusted:
            raise RepositoryError(
                f"the staff registry or settings were last changed outside cmgit (commit "
                f"{oid[:12]}); refusing to encrypt for them",
                hint="run cmgit audit; a programme manager must restore them",
            )
    cache.parent.mkdir(exist_ok=True)
    cache.write_text(key + "\n")
