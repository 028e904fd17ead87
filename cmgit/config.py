"""A case repository's configuration as committed: schemas, settings, staff registry and
the workflow. Read from git objects, never from the work tree, so an uncommitted edit of
`staff.yaml` cannot grant anyone anything; and free of any key, so the site build and the
audit read it exactly as the store does. Which version of each part is in force (its
last change that audit finds valid) is the audit's to judge.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from . import caches, migrations, yamlio
from .errors import NotACaseRepository, RepositoryError, SchemaError
from .history import Git
from .migrations import FORMAT_FIELD, MIGRATIONS_DIR, Migration
from .registry import COORDINATOR, PROGRAMME_MANAGER, Registry
from .schema import CASE, SETTINGS, STAFF, WORKFLOW, SchemaSet
from .workflow import Workflow, WorkflowError

STAFF_FILE = "staff.yaml"
SETTINGS_FILE = "settings.yaml"
SCHEMAS_DIR = "schemas"
WORKFLOW_FILE = "schemas/workflow.yaml"
MAX_CONFIG_BYTES = 4 * 1024 * 1024
CONFIG_CACHE = "config"
# The shape of what the config cache holds: a cache of another shape is not read.
CONFIG_CACHE_FORM = 3
# The parts of the configuration, each judged apart: a commit that validly changes one of
# them brings that part into force, and leaves the others as they were.
PARTS = (SCHEMAS_DIR, STAFF_FILE, SETTINGS_FILE)
T = TypeVar("T")

# What `cmgit config commit` changes, each a folder (its files) or a file, and who may:
# programme managers, or the roles the setting named (SPEC section 9, "Configuration").
SITE_DIR = "site"
MKDOCS_FILE = "mkdocs.yml"
PROVIDERS_FILE = "providers.yaml"
SOP_EDITORS = "sop_editors"
DEFAULT_SOP_EDITORS = (PROGRAMME_MANAGER, COORDINATOR)  # the setting's schema default
EDITABLE: dict[str, str | None] = {
    SCHEMAS_DIR: None,
    MKDOCS_FILE: None,
    PROVIDERS_FILE: None,
    SITE_DIR: SOP_EDITORS,
}
FOLDERS = frozenset({SCHEMAS_DIR, SITE_DIR})
# The schemas every other part is read with: a schemas/ without one of them is refused.
CORE_SCHEMAS = (CASE, WORKFLOW, SETTINGS, STAFF)
_SHOWN_PATH = re.compile(r"[A-Za-z0-9._/-]{1,120}")


def editable_part(path: str) -> str | None:
    """The part of the configuration (a key of EDITABLE) ``path`` belongs to, if any."""
    top, sep, _ = path.partition("/")
    if top in EDITABLE and bool(sep) == (top in FOLDERS):
        return top
    return None


def editors(part: str, settings: Mapping[str, Any]) -> tuple[str, ...]:
    """The roles that change ``part`` of the configuration under ``settings``."""
    setting = EDITABLE[part]
    if setting is None:
        return (PROGRAMME_MANAGER,)
    return tuple(settings.get(setting, DEFAULT_SOP_EDITORS))


def shown_path(path: str) -> str:
    """A path as a message may name it: one of odd characters (perhaps a name) is not."""
    return path if _SHOWN_PATH.fullmatch(path) else "a file of odd name"


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
    migrations: tuple[Migration, ...] = ()

    @property
    def record_format(self) -> int:
        """The format every record is at (and every record written carries)."""
        return migrations.repository_format(self.migrations)

    @property
    def sealed_entries_from(self) -> int | None:
        """The format from which records keep their forms as sealed entries, if any."""
        return migrations.sealed_entries_from(self.migrations)


def read_config(git: Git, commit: str) -> Config:
    """Schemas, settings, staff registry and workflow as of ``commit``."""
    return read_parts(git, (commit, commit, commit))


def not_in_force(flagged: Iterable[str]) -> RepositoryError | None:
    """Why the configuration committed is not the one in force: the commits that changed
    it and that audit flags (`cmgit.audit.config_in_force` finds them); None for none."""
    commits = list(dict.fromkeys(flagged))
    if not commits:
        return None
    named = ("commit " if len(commits) == 1 else "commits ") + ", ".join(
        oid[:12] for oid in commits
    )
    return RepositoryError(
        f"the configuration was changed by {named}, which cmgit audit flags; "
        "cmgit reads with the configuration before it and changes nothing under it",
        hint="a programme manager reverts it, or makes the change again with cmgit",
    )


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
    docs = caches.remembered(git, CONFIG_CACHE, (*key, CONFIG_CACHE_FORM))
    if docs is None:
        docs = _read_documents(git, sources, key[0])
        caches.remember(git, CONFIG_CACHE, (*key, CONFIG_CACHE_FORM), docs)
    schema_docs, settings, staff, flow, migration_data = docs
    schemas, workflow = _compiled(key[0], schema_docs, flow)
    found = tuple(Migration.from_data(data) for data in migration_data)
    return Config(schemas, settings, Registry.from_doc(staff), workflow, found)


# A process that judges every staff change of a history (the first command after a
# clone) meets one version of the schemas many times: each is parsed, validated and
# compiled once, by the id of its tree.
_SCHEMA_DOCUMENTS: dict[str, tuple[Any, Any, Any]] = {}
_COMPILED: dict[str, tuple[SchemaSet, Workflow]] = {}
_MIGRATIONS: dict[str, tuple[Migration, ...]] = {}  # read and checked, by schemas tree
_SCHEMAS_KEPT = 4


def _once(seen: dict[str, T], key: str, make: Callable[[], T]) -> T:
    value = seen.get(key)
    if value is None:
        if len(seen) >= _SCHEMAS_KEPT:
            seen.clear()
        value = seen[key] = make()
    return value


def _compiled(key: str, schema_docs: Any, flow: Any) -> tuple[SchemaSet, Workflow]:
    return _once(_COMPILED, key, lambda: (SchemaSet(schema_docs), _workflow(flow)))


def _schema_documents(git: Git, commit: str) -> tuple[Any, Any, Any]:
    """The JSON Schemas and the workflow data under schemas/ in ``commit``, validated,
    and the migration files as they are (read and checked with the schemas they need)."""
    under = git.files_under(commit, SCHEMAS_DIR)
    paths = [p for p in under if p.endswith(".json")]
    docs, flow = schema_documents(git.read_paths(commit, [*paths, WORKFLOW_FILE]))
    found = git.read_paths(commit, [p for p in under if migrations.is_migration_path(p)])
    return docs, flow, sorted((p, d) for p, d in found.items() if d is not None)


def read_migrations(
    files: Iterable[tuple[str, bytes]] | Mapping[str, bytes], schemas: SchemaSet
) -> tuple[Migration, ...]:
    """The migrations of schemas/migrations/, checked as a sequence and against the
    schemas: once records carry a format, the case record declares it as an open field."""
    found = migrations.read_all(dict(files))
    if found and FORMAT_FIELD not in schemas.open_fields:
        raise SchemaError(
            f"records under migrations carry their format: the case record schema has no "
            f"open field {FORMAT_FIELD}",
            hint=f'add "{FORMAT_FIELD}" to schemas/case.schema.json as an open property '
            f"(see the template), or remove {MIGRATIONS_DIR}/",
        )
    for migration in found:
        migrations.check_against(migration, schemas.open_fields)
    return found


def schema_documents(files: Mapping[str, bytes | None]) -> tuple[dict[str, Any], Any]:
    """The JSON Schemas (each ``.json`` file of ``files``, by its ``$id``) and the workflow
    data among the files of schemas/, validated: from a commit, or from the work tree
    before `cmgit config commit` commits it."""
    docs: dict[str, Any] = {}
    for path, data in files.items():
        if not path.endswith(".json"):
            continue
        try:
            doc = json.loads(data or b"{}")
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("$id"), str):
            raise SchemaError(
                f"{shown_path(path)} is not a JSON Schema with an $id",
                hint=f"correct it: every .json file under {SCHEMAS_DIR}/ is a schema",
            )
        if doc["$id"] in docs:
            raise SchemaError(f"{shown_path(path)} repeats the $id of another schema")
        docs[doc["$id"]] = doc
    missing = [schema_id for schema_id in CORE_SCHEMAS if schema_id not in docs]
    if missing:
        raise SchemaError(f"{SCHEMAS_DIR}/ has no schema {missing[0]}")
    flow = workflow_document(files.get(WORKFLOW_FILE), SchemaSet(docs))
    _workflow(flow)  # refuse an inconsistent workflow before remembering it
    return docs, flow


def _read_documents(git: Git, sources: Sequence[str], schemas_key: str) -> tuple[Any, ...]:
    """Every configuration document, each part as of its own commit, parsed and validated."""
    schemas_at, staff_at, settings_at = sources
    schema_docs, flow, migration_files = _once(
        _SCHEMA_DOCUMENTS, schemas_key, lambda: _schema_documents(git, schemas_at)
    )
    schemas, _ = _compiled(schemas_key, schema_docs, flow)
    # Remembered as plain data, checked: a command reads them without the YAML parser.
    found = _once(_MIGRATIONS, schemas_key, lambda: read_migrations(migration_files, schemas))
    files = git.read_paths(staff_at, [STAFF_FILE]) | git.read_paths(settings_at, [SETTINGS_FILE])
    settings = read_document(files[SETTINGS_FILE], schemas, SETTINGS, SETTINGS_FILE)
    staff = read_document(files[STAFF_FILE], schemas, STAFF, STAFF_FILE)
    return schema_docs, settings, staff, flow, [m.data() for m in found]


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
