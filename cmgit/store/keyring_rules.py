"""What the central repository accepts as a keyring shard, judged without any key.

The keyring's shard refs (`cmgit.keyring.ref`) are the one kind of ref the central takes
besides the programme's branch. A shard is replaced, never appended to, so each new value
is judged whole: a parentless commit made by an active staff member in cmgit's form
(signed where signatures are required), whose tree holds only folders of cases of that
shard, each with the files `wrap.check_shape` expects, ``staff.age`` wrapped to as many
readers as the registry at the branch's head gives the case; no folder for a case the
branch erased. A case the branch does not have yet (its records come in the push after
the keyring's) is judged on its files' names and form alone.

Only the folders that changed since the shard's previous value are read: the others were
judged when they came.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .. import crypto, entries, ids, signing
from ..config import Config, read_config
from ..errors import CmgitError
from ..history import (
    BLOB_MODES,
    TREE_MODE,
    ZERO_OID,
    Git,
    actor_author,
    format_message,
    split_signature,
)
from ..keyring import ref, wrap
from . import casekeys

_HEADERS = (b"tree ", b"author ", b"committer ")


def shard_problems(
    git: Git, moves: Sequence[tuple[str, str, str]], tip: str | None, *, require_signatures: bool
) -> list[str]:
    """What is wrong with moving each keyring shard ref of ``moves`` (ref, old, new), the
    programme's branch being at ``tip``; one line a problem, each naming the ref. The
    configuration and the erased cases at ``tip`` are read once for all."""
    problems = []
    judged: tuple[Config, set[str]] | None = None
    for name, old, new in moves:
        if new == ZERO_OID:
            problems.append(
                f"{name}: deleting a keyring shard is not allowed (an emptied shard stays)"
            )
            continue
        kind = git.text("cat-file", "-t", new)
        if kind != "commit":
            problems.append(
                f"{name}: a keyring shard holds a commit, not a {kind} (push with cmgit sync)"
            )
            continue
        if tip is None:
            problems.append(
                f"{name}: the central repository has no programme branch yet to judge it by"
            )
            continue
        if judged is None:
            judged = read_config(git, tip), casekeys.erased_cases(git, tip)
        config, erased = judged
        found = _commit_problems(git, new, config, require_signatures)
        shard = name.removeprefix(ref.KEYRING_PREFIX)
        found += _tree_problems(git, shard, old, new, tip, config, erased)
        problems += [f"{name}: {problem}" for problem in found]
    return problems


def _commit_problems(git: Git, commit: str, config: Config, require_signatures: bool) -> list[str]:
    """The commit itself: no parent, cmgit's headers and message, an active staff member
    as its actor, signed by their registered key where signatures are required."""
    payload, armored = split_signature(git.objects.read(commit)[1])
    head, _, message = payload.partition(b"\n\n")
    lines = head.split(b"\n")
    if len(lines) != len(_HEADERS) or not all(
        line.startswith(start) for line, start in zip(lines, _HEADERS, strict=True)
    ):
        return ["a keyring shard is one commit without parents, in cmgit's form"]
    text = message.decode("utf-8", "replace")
    actor_id = next(
        (line.split(": ", 1)[1] for line in text.split("\n") if line.startswith("Cmgit-Actor: ")),
        "",
    )
    member = config.registry.staff.get(actor_id)
    if member is None or not member.active:
        return ["the keyring commit is not made by an active staff member"]
    trailers = [ref.KEYRING_TRAILER, ("Cmgit-Actor", member.id), ("Cmgit-Role", member.role)]
    if text != format_message(ref.SUBJECT, trailers):
        return ["the keyring commit's message is not in cmgit's generated form"]
    person = actor_author(member.id)
    ident = f"{person.name} <{person.email}> ".encode()
    author, committer = lines[1].removeprefix(b"author "), lines[2].removeprefix(b"committer ")
    if not author.startswith(ident) or committer != author:
        return ["the keyring commit's author and committer are not its actor in cmgit's form"]
    required = require_signatures or bool(config.settings.get("require_signed_commits"))
    if armored is None:
        return ["the keyring commit is unsigned where signatures are required"] if required else []
    try:
        key = signing.verify(payload, armored)
    except signing.BadSignature:
        return ["the keyring commit's signature is not valid"]
    if key != member.signing_key:
        return [f"the keyring commit is signed by a key that is not {member.id}'s registered key"]
    return []


def _tree_problems(
    git: Git, shard: str, old: str, new: str, tip: str, config: Config, erased: set[str]
) -> list[str]:
    """The shard's case folders that changed since ``old``, each judged (see above)."""
    before = _folders(git, old) if old != ZERO_OID and _exists(git, old) else {}
    problems = []
    people, threshold = casekeys.custodians(config.settings)
    for name, (mode, oid) in sorted(_folders(git, new).items()):
        if not (mode == TREE_MODE and ids.CASE_ID_RE.fullmatch(name) and ids.bucket(name) == shard):
            problems.append("the shard holds something other than folders of its own cases")
            break
        if before.get(name) == (mode, oid):
            continue
        files = _files(git, oid)
        if files is None:
            problems.append(f"{name}: the case's folder holds something other than files")
            continue
        if name in erased:
            problems.append(f"{name}: the case was erased; its key may not come back")
            continue
        count = _staff_count(git, name, tip, config, files)
        problems += [f"{name}: {p}" for p in wrap.check_shape(files, count, people, threshold)]
    return problems


def _staff_count(
    git: Git, case_id: str, tip: str, config: Config, files: Mapping[str, bytes]
) -> int:
    """How many readers ``staff.age`` must be wrapped to: the registry's readers of the
    case at ``tip``; for a case the branch does not have yet, as many as it holds."""
    blob = git.blob_id(tip, ids.record_path(case_id))
    if blob is not None:
        try:
            fields = entries.parse_open_file(git.read_blob(blob), config.schemas.open_fields)
            return len(casekeys.readers(config.registry, config.settings, fields))
        except (CmgitError, KeyError):
            pass  # not a record with a key (format 1): judged on its form alone
    try:
        return crypto.inspect_binary(files.get(wrap.STAFF_FILE, b"")).stanza_count
    except CmgitError:
        return 0  # check_shape names it


def _folders(git: Git, commit: str) -> dict[str, tuple[str, str]]:
    return git.objects.tree(git.objects.commit_tree(commit))


def _files(git: Git, tree: str) -> dict[str, bytes] | None:
    found = {}
    for name, (mode, oid) in git.objects.tree(tree).items():
        if mode not in BLOB_MODES:
            return None
        try:
            found[name] = git.read_blob(oid, limit=ref.FILE_LIMIT)
        except CmgitError:  # larger than any wrapped key
            return None
    return found


def _exists(git: Git, oid: str) -> bool:
    return git.text("cat-file", "-t", oid, ok=(0, 128)) == "commit"
