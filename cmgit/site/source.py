"""The committed configuration and cases of a repository, read with git alone.

Nothing here handles a key: the open fields of the records, the changes of state (from
the open state histories, or from the commits' trailers) and the programme's workflow,
schemas and settings are all readable without one.
"""

from __future__ import annotations

import contextlib
import json
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import caches, stats
from ..config import (
    SCHEMAS_DIR,
    SETTINGS_FILE,
    STAFF_FILE,
    WORKFLOW_FILE,
    load_workflow,
    read_config,
    read_document,
)
from ..errors import CmgitError, NotACaseRepository
from ..history import Git
from ..progress import SILENT, Progress
from ..registry import CASEWORKER, Registry, settings_defaults
from ..schema import CASE, SETTINGS, STAFF, SchemaSet
from ..workflow import CLOSED, MONITORING, STATE_HISTORY, Workflow


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
