"""`cmgit migrate`: the migrations a newer cmgit ships, brought into a case repository
made by an earlier one, and applied as any migration is: one `config` commit by a
programme manager, every record brought along and re-sealed (`procedure`, `migrate`).

A shipped migration is known by its name without the number (``record-format`` of
``0002-record-format.yaml``): the programme may have migrations of its own, so one the
repository lacks takes the next free format. What the migration creates (its new
fields, and the record format itself) comes with it from the template's schemas, where
the repository's schemas lack it; the rest of the programme's schemas stays its own.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from typing import Any

from .. import crypto, migrations
from ..config import editable_part, editors
from ..errors import SchemaError
from ..migrations import FORMAT_FIELD, MIGRATIONS_DIR, Migration
from ..registry import PROGRAMME_MANAGER
from ..schema import CASE, SchemaSet
from ..template import template_root
from .core import Core
from .procedure import ConfigChange, config_commit
from .setup import TEMPLATE_ITEMS

REASON = "cmgit_migrate"


def migrate(
    repo: Core, identities: Sequence[crypto.Identity], *, today: dt.date, dry_run: bool
) -> ConfigChange:
    """Bring the template's migrations that the repository lacks, with the schema parts
    they need, and commit them with every record migrated (none if ``dry_run``)."""
    repo.reload_config()
    repo.check_writer()
    repo.acting(identities, PROGRAMME_MANAGER, action="migrating the records")
    files = brought(repo)
    if not files:
        return ConfigChange(repo.actor(identities).id)
    return config_commit(repo, identities, REASON, today=today, dry_run=dry_run, brought=files)


def _slug(name: str) -> str:
    return name.partition("-")[2]


def shipped() -> list[tuple[Migration, bytes]]:
    """The template's migrations, in format order, with their files."""
    folder = template_root() / MIGRATIONS_DIR
    found = {
        f"{MIGRATIONS_DIR}/{path.name}": path.read_bytes() for path in sorted(folder.glob("*"))
    }
    return [(m, found[m.path]) for m in migrations.read_all(found)]


def brought(repo: Core) -> dict[str, bytes]:
    """The files `migrate` commits: each shipped migration the repository lacks, at the
    next free format, and the schemas with what those migrations create."""
    have = {_slug(m.name) for m in repo.config.migrations}
    fmt = repo.config.record_format
    files: dict[str, bytes] = {}
    added: list[Migration] = []
    for migration, data in shipped():
        if _slug(migration.name) in have:
            continue
        fmt += 1
        path = f"{MIGRATIONS_DIR}/{fmt:04d}-{_slug(migration.name)}.yaml"
        text = re.sub(rb"(?m)^format: *[0-9]+ *$", f"format: {fmt}".encode(), data, count=1)
        files[path] = text
        added.append(migrations.parse(path, text))
    untouched = template_updates(repo)
    if added:
        needed = _schemas_needed(repo, added)
        files.update({path: data for path, data in needed.items() if path not in untouched})
    files.update(untouched)
    return files


def template_updates(repo: Core) -> dict[str, bytes]:
    """The template's files (schemas, SOP pages, mkdocs.yml) that a newer cmgit changed or
    added, where the programme never changed its own: the same at HEAD as in the first
    commit, made from the template by `cmgit init`, or in neither. A file the programme
    changed or removed stays its own. So corrected guards, their refusal texts and the
    SOP pages reach repositories made earlier. Nothing in a shallow clone, whose first
    commit is not the one `init` made; pages only where the actor's role edits them."""
    if (repo.git.git_dir / "shallow").exists():
        return {}
    head = repo.git.head()
    assert head is not None
    root = repo.git.text("rev-list", "--max-parents=0", head).split()[0]
    source = template_root()
    wanted = {
        path.relative_to(source).as_posix(): path
        for item in TEMPLATE_ITEMS
        for path in ((source / item).rglob("*") if (source / item).is_dir() else [source / item])
        if path.is_file() and "__pycache__" not in path.parts
    }
    wanted = {
        rel: path
        for rel, path in wanted.items()
        if editable_part(rel) is not None
        and PROGRAMME_MANAGER in editors(str(editable_part(rel)), repo.settings)
        and not migrations.is_migration_path(rel)
    }
    updates: dict[str, bytes] = {}
    for rel, path in sorted(wanted.items()):
        now, first = repo.git.path_entry(head, rel), repo.git.path_entry(root, rel)
        if now != first:
            continue  # the programme's own
        data = path.read_bytes()
        if now is None or repo.git.read_blob(now[1]) != data:
            updates[rel] = data
    return updates


def _schemas_needed(repo: Core, added: Sequence[Migration]) -> dict[str, bytes]:
    """The repository's case and form schemas, each with the properties the migrations
    create (and the record format) that it lacks, taken from the template's."""
    template = SchemaSet.load(template_root() / "schemas")
    created: set[tuple[str, ...]] = {(FORMAT_FIELD,)}
    for migration in added:
        for step in migration.steps:
            if step.kind == "set_default":
                created.add(step.field)
            elif step.kind in ("rename_field", "move_field"):
                created.add(step.to)
    head = repo.git.head()
    assert head is not None
    paths = [p for p in repo.git.files_under(head, "schemas") if p.endswith(".json")]
    committed = repo.git.read_paths(head, paths)
    by_id = {}
    for path, data in committed.items():
        doc = json.loads(data or b"{}")
        by_id[doc.get("$id")] = (path, doc)
    changed: dict[str, Any] = {}
    for field in sorted(created):
        top = field[0]
        if len(field) == 1:
            _take(by_id, changed, template, CASE, top, after="version")
        elif len(field) == 2:
            prop = template.case_properties.get(top) or {}
            ref = prop.get("$ref") or (prop.get("items") or {}).get("$ref")
            if isinstance(ref, str):
                _take(by_id, changed, template, ref, field[1])
    return {
        path: (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()
        for path, doc in changed.items()
    }


def _take(
    by_id: dict[Any, tuple[str, Any]],
    changed: dict[str, Any],
    template: SchemaSet,
    schema_id: str,
    name: str,
    after: str | None = None,
) -> None:
    """Property ``name`` of the template's schema ``schema_id`` into the repository's, if
    the template has it and the repository's lacks it; required there if required in the
    template, placed after ``after`` where that is a property."""
    source = template.schemas.get(schema_id) or {}
    prop = (source.get("properties") or {}).get(name)
    if prop is None or schema_id not in by_id:
        return
    path, doc = by_id[schema_id]
    doc = changed.get(path, doc)
    props = doc.get("properties")
    if not isinstance(props, dict):
        raise SchemaError(f"{schema_id} has no properties to add {name} to")
    if name in props:
        return
    items = list(props.items())
    at = next((i + 1 for i, (key, _) in enumerate(items) if key == after), len(items))
    doc["properties"] = dict([*items[:at], (name, prop), *items[at:]])
    if name in (source.get("required") or []):
        required = list(doc.get("required") or [])
        spot = required.index(after) + 1 if after in required else len(required)
        doc["required"] = [*required[:spot], name, *required[spot:]]
    changed[path] = doc
