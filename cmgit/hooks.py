"""git hooks and drivers: the client's pre-commit and commit-msg hooks and diff driver,
and the central server's pre-receive hook.

cmgit makes its commits itself, without running `git commit`, so a pre-commit hook that
sees a change under records/ is looking at a commit cmgit did not make: it refuses it.
The commits people make with git (a file of the configuration, say) keep to the case
repository's layout, and neither their message nor a new path may hold a name, place or
contact of a case the committer can open (guard GC, see `cmgit.store.screening`). That
check needs the committer's key: without a usable CMGIT_IDENTITY, or if the repository
cannot be read, the hooks say the check was skipped and why, and let the commit through,
so that nobody is locked out of committing work that is not a record; the central
repository's pre-receive hook is the trust boundary, not these.

The central repository is a trust boundary: whatever it accepts reaches every clone and
can never be taken back. It takes commits on the programme's one branch and the
keyring's shard refs (each replaced whole, judged by `cmgit.store.keyring_rules`), and
nothing else: no other branch, tag, replace ref or note, and no pushed object that
neither reaches. Its post-receive hook deletes at once what a replaced shard alone held.
"""

from __future__ import annotations

import datetime as dt
import shlex
import stat
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from . import ids
from .audit import Auditor
from .config import (
    MKDOCS_FILE,
    PROVIDERS_FILE,
    SCHEMAS_DIR,
    SETTINGS_FILE,
    SITE_DIR,
    STAFF_FILE,
    read_config,
)
from .entries import SEALED_DIR
from .errors import CmgitError, NotACaseRepository, Refused, RepositoryError, UsageError
from .history import ZERO_OID, Git, repository_lock
from .progress import SILENT, Progress

MARK = "# installed by cmgit"
# What `install_server` sets, which git applies before the hook runs: no deletion, and
# malformed objects (a tree entry named .git, a bad mode) refused on receipt. A rewrite
# of the branch is the hook's to refuse: git's receive.denyNonFastForwards would refuse
# the keyring's shards too, which are replaced on every change (`cmgit.keyring.ref`).
SERVER_SETTINGS = ("receive.denyDeletes", "receive.fsckObjects")
# Also set by `install_server`, and why: git's automatic gc would pack the keyring with
# the records, after which a prune must rewrite the records' pack (`cmgit gc` keeps them
# apart); an auditor's clone filters out the sealed entries, then fetches by id the
# older files it needs (`cmgit clone --auditor`): objects the programme's refs reach,
# none other (protocol v2 needs neither of the last two). A central repository without
# them refuses no push.
SERVER_EXTRAS = (
    ("receive.denyNonFastForwards", "false"),
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
    ("uploadpack.allowFilter", "true"),
    ("uploadpack.allowReachableSHA1InWant", "true"),
)
DEFAULT_BRANCH = "main"  # the `branch` setting's default (schemas/settings.schema.json)
CLOCK_TOLERANCE = 86_400  # seconds a commit may be dated ahead of the server's clock
SHOWN = 3  # stray objects named in a refusal
MAX_MESSAGE = 1024 * 1024  # the largest commit message the commit-msg hook reads
# What a case repository holds at its top level: what `cmgit init` makes (the template's
# schemas, site pages and mkdocs.yml; records/, settings and staff registry) and the
# service directory `cmgit config commit` adds. Folders end in "/".
LAYOUT = (
    f"{ids.RECORDS_DIR}/",
    f"{SCHEMAS_DIR}/",
    f"{SITE_DIR}/",
    MKDOCS_FILE,
    SETTINGS_FILE,
    STAFF_FILE,
    PROVIDERS_FILE,
)

# Each kind of ref besides the programme's branch, and what its pusher should do instead.
_REF_KINDS = (
    ("refs/tags/", "a tag", "delete it: git tag -d NAME"),
    (
        "refs/replace/",
        "a replace ref, which would show one object in place of another in every clone",
        "delete it: git replace -d OID",
    ),
    ("refs/notes/", "a notes ref", "delete it: git update-ref -d REF"),
    (
        "refs/heads/",
        "another branch",
        "bring the work onto the programme's branch with cmgit sync; "
        "a branch name must never carry personal data",
    ),
    ("refs/pull/", "a pull request ref the hosting service made", "close the pull request"),
    (
        "refs/merge-requests/",
        "a merge request ref the hosting service made",
        "close the merge request",
    ),
)


def _command() -> str:
    """How hooks call this cmgit: the same interpreter, so a virtualenv keeps working."""
    return f"{shlex.quote(sys.executable)} -m cmgit.cli"


def _write_hook(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if path.exists() and MARK not in path.read_text(errors="replace"):
        raise RepositoryError(
            f"a {name} hook exists that cmgit did not install",
            hint=f"merge it by hand into {name}, or move it away",
        )
    path.write_text(f"#!/bin/sh\n{MARK}\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def install_client(git: Git) -> list[str]:
    """pre-commit and commit-msg hooks, and a diff driver that shows recipients the
    decrypted record."""
    hooks = Path(git.text("rev-parse", "--git-path", "hooks"))
    hooks = hooks if hooks.is_absolute() else git.root / hooks
    done = [
        str(_write_hook(hooks, "pre-commit", f"exec {_command()} hooks pre-commit")),
        str(_write_hook(hooks, "commit-msg", f'exec {_command()} hooks commit-msg "$1"')),
    ]
    git.run("config", "diff.cmgit.textconv", f"{_command()} hooks textconv")
    # Never keep decrypted text in git's textconv cache (notes on disk).
    git.run("config", "diff.cmgit.cachetextconv", "false")
    git.run("config", "merge.cmgit.name", "cmgit field-by-field record merge")
    git.run("config", "merge.cmgit.driver", f"{_command()} hooks merge-driver %O %A %B %P")
    info = git.git_dir / "info"
    info.mkdir(exist_ok=True)
    attributes = info / "attributes"
    existing = attributes.read_text() if attributes.exists() else ""
    lines = existing.splitlines()
    for line in (f"{folder}/** diff=cmgit merge=cmgit" for folder in (ids.RECORDS_DIR, SEALED_DIR)):
        if line not in lines:
            lines.append(line)
    attributes.write_text("".join(f"{line}\n" for line in lines))
    done.append("diff and merge drivers for records/ and sealed/ (local: .git/info/attributes)")
    return done


def install_server(bare: Path, *, require_signatures: bool = True) -> str:
    git = Git(bare)
    if git.text("rev-parse", "--is-bare-repository") != "true":
        raise RepositoryError(
            "--server installs into a bare central repository",
            hint="run it in the repository offices push to",
        )
    for name in SERVER_SETTINGS:
        git.run("config", name, "true")
    for name, value in SERVER_EXTRAS:
        git.run("config", name, value)
    from .keyring import ref as keyring

    # A repository restored from a backup holds the keyring in packs of its own (see the
    # README): listed, a prune after a push can reach into them.
    keyring.adopt_packs(git, list(keyring.heads(git).values()))
    flag = "" if require_signatures else " --allow-unsigned"
    where = shlex.quote(str(bare))
    _write_hook(bare / "hooks", "post-receive", f"exec {_command()} -C {where} hooks post-receive")
    return str(
        _write_hook(
            bare / "hooks", "pre-receive", f"exec {_command()} -C {where} hooks pre-receive{flag}"
        )
    )


def pre_commit(git: Git) -> list[str]:
    """Paths under records/ and sealed/ (a case's entries, format 2) staged for a commit
    that cmgit is not making."""
    out = git.run("diff", "--cached", "--name-only", "-z", "--", ids.RECORDS_DIR, SEALED_DIR)
    return [p for p in out.decode("utf-8", "replace").split("\0") if p]


def new_paths(git: Git) -> list[str]:
    """Paths a git commit would add (a rename adds its new path)."""
    out = git.run("diff", "--cached", "--name-only", "-z", "--no-renames", "--diff-filter=A")
    return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]


def outside_layout(paths: Iterable[str]) -> list[str]:
    """The paths that are not in the case repository's LAYOUT."""
    return [
        p for p in paths if not any(p == a or (a[-1] == "/" and p.startswith(a)) for a in LAYOUT)
    ]


def check_new_paths(git: Git, identity: str | None) -> str | None:
    """pre-commit: refuse new paths outside the layout (keyless), then those whose
    names hold a personal string (GC); why the GC check was skipped, if it was."""
    if not _is_case_repository(git):
        return None
    added = new_paths(git)
    outside = outside_layout(added)
    if outside:
        raise Refused(
            f"refused: {len(outside)} new path(s) outside the case repository's layout",
            hint="a case repository holds only " + ", ".join(LAYOUT) + "; keep other files "
            "elsewhere and unstage these (git diff --cached --name-only --diff-filter=A "
            "lists the new paths)",
        )
    if not added:
        return None
    from .store.screening import path_texts

    return screen_commit(git, identity, path_texts(added, "new file"))


def check_message(git: Git, identity: str | None, message_file: Path) -> str | None:
    """commit-msg: refuse a message that holds a personal string (GC) of a case the
    committer can open; why the check was skipped, if it was."""
    if not _is_case_repository(git):
        return None
    from .store import read_limited

    data = read_limited(message_file, MAX_MESSAGE, "commit message")
    touched = [c for p in pre_commit(git) if (c := ids.case_id_from_path(p))]
    return screen_commit(
        git, identity, {"the commit message": data.decode("utf-8", "replace")}, touched
    )


def screen_commit(
    git: Git, identity: str | None, texts: dict[str, str], touched: Sequence[str] = ()
) -> str | None:
    """GC over ``texts`` of a commit git makes: Refused on a hit; otherwise None, or why
    the check could not run (no identity, not staff here, unreadable repository)."""
    if not identity:
        return _skipped("no identity (set CMGIT_IDENTITY to your identity file)")
    from .store import Repository, load_identities
    from .store.screening import screen

    try:
        repo = Repository.open(git.root)
        identities = load_identities(identity)
        repo.actor(identities)
        screen(repo, identities, texts, touched)
    except Refused:
        raise
    except CmgitError as exc:  # never a value from a record: see cmgit.errors
        return _skipped(exc.message)
    return None


def _skipped(why: str) -> str:
    return (
        f"the check for names, places and contacts of cases (guard GC) was skipped: {why}; "
        "the commit goes ahead without it"
    )


def _is_case_repository(git: Git) -> bool:
    return (
        git.head() is not None
        and git.blob_id("HEAD", f"{SCHEMAS_DIR}/case.schema.json") is not None
    )


def pre_receive(
    git: Git,
    lines: Iterable[str],
    *,
    require_signatures: bool = True,
    quarantine: Path | None = None,
    received: float | None = None,
) -> list[str]:
    """Problems with a push, each a line for the pusher; empty when the push may land.

    ``lines`` are git's "old new ref" lines. Only the programme's branch may move, only
    forward, by commits audit finds nothing wrong with (signatures required) and dated
    no later than a day after ``received`` (now, by default); every object the push
    brought (in ``quarantine``, where git holds them until the hook agrees) must be
    reachable from the branch's new tip. git refuses the whole push on any problem."""
    received = time.time() if received is None else received
    unset = [
        name
        for name in SERVER_SETTINGS
        if git.text("config", "--bool", "--get", name, ok=(0, 1)) != "true"
    ]
    if unset:
        # A repository set up by an earlier cmgit, or changed since: what the hook
        # leaves to git would pass unchecked. Refusing every push gets it fixed.
        return [
            f"the central repository is not set up as cmgit sets it ({', '.join(unset)} "
            "off): a coordinator runs cmgit hooks install --server there again"
        ]
    branch, settled = programme_branch(git)
    updates = [parts for parts in (line.split() for line in lines) if len(parts) == 3]
    problems = [
        f"{ref}: {kind}; the central repository accepts only {branch} ({advice})"
        for _, _, ref in updates
        if ref != branch and not is_keyring_ref(ref)
        for kind, advice in [ref_kind(ref)]
    ]
    moved = _keyring_updates(git, updates, settled, require_signatures, problems)
    for old, new, ref in updates:
        if ref != branch:
            continue
        base = old
        if old == ZERO_OID and settled is not None and git.is_ancestor(settled, new):
            # The branch made anew on the history the repository holds (its name changed
            # in the settings): what the repository holds was checked when it came.
            base = settled
        problems += _branch_problems(git, old, base, new, ref, require_signatures, received)
        moved.append((base, new))
    if not problems and quarantine is not None:
        problems += _stray_objects(git, quarantine, moved, branch)
    return problems


def is_keyring_ref(ref: str) -> bool:
    """Whether ``ref`` is one of the keyring's shard refs, the one kind of ref the central
    repository takes besides the programme's branch."""
    from .keyring.ref import KEYRING_PREFIX, SHARD_RE

    return ref.startswith(KEYRING_PREFIX) and bool(
        SHARD_RE.fullmatch(ref.removeprefix(KEYRING_PREFIX))
    )


def _keyring_updates(
    git: Git,
    updates: Sequence[list[str]],
    tip: str | None,
    require_signatures: bool,
    problems: list[str],
) -> list[tuple[str, str]]:
    """Judge the keyring shards a push moves (adding to ``problems``); returns their moves,
    whose objects the push may bring along with the branch's."""
    from .store.keyring_rules import shard_problems

    keyring = [parts for parts in updates if is_keyring_ref(parts[2])]
    if (
        keyring
        and git.text("config", "--bool", "--get", "receive.denyNonFastForwards", ok=(0, 1))
        == "true"
    ):
        # Set by an earlier cmgit: git would refuse every replaced shard after the hook.
        problems.append(
            "the central repository refuses replaced keyring shards (receive."
            "denyNonFastForwards on): a coordinator runs cmgit hooks install --server there "
            "again"
        )
    moves = [(ref, old, new) for old, new, ref in keyring]
    problems += shard_problems(git, moves, tip, require_signatures=require_signatures)
    return [(ZERO_OID, new) for _, new, _ in keyring]  # replaced whole: judged from nothing


def _keyring_checks(git: Git, refs: Sequence[str], tip: str) -> list[str]:
    """`server_checks` of the keyring's shards, each judged whole as the hook judges a
    new one (signatures as the settings require)."""
    from .store.keyring_rules import shard_problems

    heads = git.text("rev-parse", *refs).split() if refs else []
    moves = [(ref, ZERO_OID, new) for ref, new in zip(refs, heads, strict=True)]
    return shard_problems(git, moves, tip, require_signatures=False)


def post_receive(git: Git, lines: Iterable[str]) -> int:
    """After a push: delete at once the objects of the keyring shards it replaced that the
    new ones no longer hold (an old wrapping must not outlive its replacement on the
    central either), and list a pack the push brought that holds keyring objects alone,
    so that later prunes can reach into it. Returns how many objects were destroyed."""
    from .keyring import ref as keyring

    moves = [
        (old, new)
        for old, new, ref in (line.split() for line in lines if len(line.split()) == 3)
        if is_keyring_ref(ref) and old != new
    ]
    if not moves:
        return 0
    with repository_lock(git.git_dir, wait_for_index=False):  # apart from cmgit gc
        keyring.keep_out_of_gc(git)
        keyring.adopt_packs(git, [new for _, new in moves if new != ZERO_OID])
        return sum(
            keyring.prune(git, old, None if new == ZERO_OID else new)
            for old, new in moves
            if old != ZERO_OID
        )


def server_checks(
    git: Git, *, remembered: bool = True, now: float | None = None, progress: Progress = SILENT
) -> list[str]:
    """What the pre-receive hook would refuse, found in a mirror of a central repository
    that runs no hook (a hosting service): every ref besides the programme's branch, and
    every commit on the branch that audit flags (signatures as the settings require) or
    that is dated more than a day ahead of ``now``. Detection, not prevention: what such
    a ref holds could already be fetched. Empty when all is well."""
    bare = git.text("rev-parse", "--is-bare-repository", ok=(0, 128))
    if not bare:
        raise NotACaseRepository("not a git repository", hint="use -C DIR")
    if bare != "true":
        raise UsageError(
            "--server-checks reads a mirror of the central repository, with every ref it has",
            hint="git clone --mirror URL central.git, then cmgit -C central.git audit "
            "--server-checks",
        )
    now = time.time() if now is None else now
    branch, _ = programme_branch(git)
    refs = git.text("for-each-ref", "--format=%(refname)").splitlines()
    problems = [
        f"{ref}: {kind} beside {branch}; what it holds could already be fetched "
        f"({advice}, on the hosting service too)"
        for ref in refs
        if ref != branch and not is_keyring_ref(ref)
        for kind, advice in [ref_kind(ref)]
    ]
    tip = _commit(git, branch)
    if tip is None:
        return [*problems, f"{branch}: the programme's branch has no commits"]
    problems += _keyring_checks(git, [r for r in refs if is_keyring_ref(r)], tip)
    # Audit remembers the last commit it verified on HEAD's branch; another branch is
    # walked whole.
    on_head = git.head() == tip
    # Replace refs are named above with the other refs; audit need not name them again.
    report = Auditor(git).run(
        remembered=remembered and on_head,
        until=None if on_head else tip,
        progress=progress,
        indirection=False,
    )
    problems += [f"{v.commit[:12]} {v.rule}: {v.detail}" for v in report.violations]
    # The whole branch, not only what audit walked: audit remembers where it got to
    # whatever the dates, and a re-run must still name a commit dated ahead.
    return problems + _future_commits(git, ZERO_OID, tip, now)


def programme_branch(git: Git) -> tuple[str, str | None]:
    """The programme's one branch, refs/heads/ and the `branch` setting committed at the
    tip of the repository's own branch (what HEAD names, else main), and that tip; while
    there is none, refs/heads/main and None."""
    head = git.text("symbolic-ref", "-q", "HEAD", ok=(0, 1))
    for ref in dict.fromkeys(r for r in (head, f"refs/heads/{DEFAULT_BRANCH}") if r):
        tip = _commit(git, ref)
        if tip is None:
            continue
        try:
            name = read_config(git, tip).settings.get("branch", DEFAULT_BRANCH)
        except CmgitError:  # a configuration audit flags anyway
            name = DEFAULT_BRANCH
        return f"refs/heads/{name}", tip
    return f"refs/heads/{DEFAULT_BRANCH}", None


def ref_kind(ref: str) -> tuple[str, str]:
    """What kind of ref ``ref`` is, and how its owner removes it."""
    for prefix, kind, advice in _REF_KINDS:
        if ref.startswith(prefix):
            return kind, advice
    return "a ref outside the branches", "delete it: git update-ref -d REF"


def _commit(git: Git, ref: str) -> str | None:
    return git.text("rev-parse", "-q", "--verify", f"{ref}^{{commit}}", ok=(0, 1)) or None


def _branch_problems(
    git: Git,
    old: str,
    base: str,
    new: str,
    ref: str,
    require_signatures: bool,
    received: float,
) -> list[str]:
    """What is wrong with moving the branch from ``old`` to ``new``, judging the commits
    after ``base`` (``old``, or the commit the new branch grows from)."""
    if new == ZERO_OID:
        return [f"{ref}: deleting the programme's branch is not allowed"]
    kind = git.text("cat-file", "-t", new)
    if kind != "commit":
        # git would refuse to point the branch at it only after the hook, once the
        # pushed objects are stored for good.
        return [f"{ref}: a branch holds commits only, not a {kind} (push with cmgit sync)"]
    if old != ZERO_OID and not git.is_ancestor(old, new):
        return [f"{ref}: history may not be rewritten (force push refused)"]
    report = Auditor(git).run(
        None if base == ZERO_OID else base,
        remembered=False,
        until=new,
        require_signatures=require_signatures,
        indirection=False,
    )
    problems = [f"{v.commit[:12]} {v.rule}: {v.detail}" for v in report.violations]
    return problems + _future_commits(git, base, new, received)


def _future_commits(git: Git, old: str, new: str, now: float) -> list[str]:
    """Commits in old..new dated more than a day after ``now``: made on a computer whose
    clock is ahead, they would make every later commit look out of order."""
    since = [] if old == ZERO_OID else [f"^{old}"]
    problems = []
    for line in git.text("log", "--format=%H %ct", new, *since).splitlines():
        oid, stamp = line.split()
        if int(stamp) > now + CLOCK_TOLERANCE:
            when = dt.datetime.fromtimestamp(int(stamp), dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
            problems.append(
                f"{oid[:12]} time: committed at {when}, more than a day after this server's "
                "clock; fix the clock of the computer that made it, then make the commit again"
            )
    return problems


def _stray_objects(
    git: Git, quarantine: Path, moved: Sequence[tuple[str, str]], branch: str
) -> list[str]:
    """The pushed objects the branch's new tip does not reach: a blob, a tree or a whole
    history sent along with a good update would sit in the central repository, and in
    every mirror of it, with nothing pointing at it."""
    pushed = _objects_in(git, quarantine)
    news = [new for _, new in moved]
    olds = [old for old, _ in moved if old != ZERO_OID]
    reached = set(
        git.run("rev-list", "--objects", "--no-object-names", *news, "--not", *olds)
        .decode("ascii")
        .split()
    )
    stray = {oid: kind for oid, kind in pushed.items() if oid not in reached}
    if stray:  # sent again though the repository has it already: nothing new disclosed
        kept = _objects_in(git, git.git_dir / "objects", only=stray)
        stray = {oid: kind for oid, kind in stray.items() if oid not in kept}
    if not stray:
        return []
    named = ", ".join(f"{oid[:12]} (a {kind})" for oid, kind in sorted(stray.items())[:SHOWN])
    return [
        f"{len(stray)} pushed object(s) not reachable from {branch}, such as {named}; the "
        "central repository keeps only the branch's history: push with cmgit sync"
    ]


def _objects_in(git: Git, folder: Path, only: Iterable[str] | None = None) -> dict[str, str]:
    """Objects stored in the object folder ``folder`` itself (not its alternates), with
    their kinds: all of them, or those of ``only`` that it has."""
    alone = {"GIT_OBJECT_DIRECTORY": str(folder), "GIT_ALTERNATE_OBJECT_DIRECTORIES": ""}
    fmt = "--batch-check=%(objectname) %(objecttype)"
    if only is None:
        out = git.run("cat-file", "--batch-all-objects", fmt, env=alone)
    else:
        out = git.run("cat-file", fmt, env=alone, input="".join(f"{o}\n" for o in only).encode())
    found = {}
    for line in out.decode("ascii").splitlines():
        oid, kind = line.split()[:2]
        if kind != "missing":
            found[oid] = kind
    return found
