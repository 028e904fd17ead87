"""Free text screened for personal strings of cases before it goes into a commit (guard
GC): a commit message, new paths, the pages of a configuration commit.

Only a few cases are opened, so that the check costs little at any size: those the
text names by ID, those the caller says the commit touches, and the committer's own
caseload (every case in a caseload state whose open `caseworker` field names them,
found without a key).
Each is opened with the committer's identity, in memory; a case they cannot open is
left out, as it must be: its strings are not theirs to compare.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from .. import crypto, ids, personal_text
from ..config import SCHEMAS_DIR
from ..errors import CaseNotFound, InvalidRecord, NotARecipient
from ..schema import SchemaSet
from ..template import template_root
from . import bulk
from .core import Committed, Core


def screen(
    repo: Core,
    identities: Sequence[crypto.Identity],
    texts: Mapping[str, str],
    touched: Iterable[str] = (),
) -> None:
    """Refuse (GC, exit 4) if any of ``texts`` (by where each comes from) holds a name,
    place or contact of a case the committer can open among those screened."""
    hits = personal_text.find(texts, personal_strings(repo, identities, texts, touched))
    if hits:
        raise personal_text.refusal(hits)


def screen_files(
    repo: Core, identities: Sequence[crypto.Identity], files: Mapping[str, bytes | None]
) -> None:
    """Refuse (GC) a commit of ``files`` (path: content, None if removed) whose paths or
    text hold a personal string: a configuration commit of SOP pages and schemas."""
    texts = path_texts([path for path, data in files.items() if data is not None], "file")
    texts.update(
        (path, data.decode("utf-8", "replace")) for path, data in files.items() if data is not None
    )
    screen(repo, identities, texts)


def path_texts(paths: Iterable[str], what: str) -> dict[str, str]:
    """Paths to screen, each under a label that names it without repeating it (a path
    that holds a name must not be shown again): its place among ``paths`` in order."""
    listed = sorted(paths)
    return {f"the path of {what} {n} of {len(listed)}": p for n, p in enumerate(listed, 1)}


def personal_strings(
    repo: Core,
    identities: Sequence[crypto.Identity],
    texts: Mapping[str, str],
    touched: Iterable[str] = (),
) -> dict[str, set[str]]:
    """The needles of each case screened, by case ID (see the module's docstring)."""
    actor = repo.actor(identities)
    at = {name: n for n, name in enumerate(repo.schemas.open_fields)}
    case_at, worker_at, state_at = at["case_id"], at["caseworker"], at["state"]
    caseload = repo.workflow.caseload_states
    wanted = {
        row[case_at]
        for row in repo.open_rows()
        if row[worker_at] == actor.id and row[state_at] in caseload
    }
    wanted.update(touched)
    for text in texts.values():
        wanted.update(ids.CASE_ID_RE.findall(text))
    committed = {
        case_id: entry
        for case_id in sorted(wanted)
        if ids.CASE_ID_RE.fullmatch(case_id)
        and (entry := repo.git.path_entry("HEAD", ids.record_path(case_id)))
    }
    case_ids = sorted(committed)
    plans = marked_fields(repo)
    found = bulk.in_pool(
        repo.git,
        lambda case_id, entry: _needles(repo, case_id, entry, identities, actor.recipient, plans),
        case_ids,
        committed,
        "Screening for personal details",
        repo.progress,
    )
    return {case_id: needles for case_id, needles in zip(case_ids, found, strict=True) if needles}


def marked_fields(repo: Core) -> dict[str, personal_text.Plan]:
    """Where the repository's form schemas mark names, places and contacts; where they
    mark none (a repository made before the marks, until `cmgit migrate` brings them),
    where this cmgit's template marks them: which fields name someone does not change."""
    return personal_text.plan(repo.schemas) or personal_text.plan(
        SchemaSet.load(template_root() / SCHEMAS_DIR)
    )


def _needles(
    repo: Core,
    case_id: str,
    committed: Committed,
    identities: Sequence[crypto.Identity],
    recipient: str,
    plans: Mapping[str, personal_text.Plan],
) -> set[str]:
    """The needles of one case, or none if ``recipient`` is not one of its readers."""
    try:
        loaded = repo.load_open(case_id, committed)
        if recipient not in repo.expected_recipients(loaded.record.open):
            return set()
        forms = repo.open_forms(loaded, identities)
    except (InvalidRecord, NotARecipient, CaseNotFound):
        return set()  # what cmgit validate reports; nothing to compare here
    return personal_text.needles(personal_text.marked_values(forms, plans))
