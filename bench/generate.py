"""Synthetic programmes for the benchmarks: N cases with signed, realistic histories.

A programme is made in two parts:

1. Through cmgit itself: the staff (an age identity and an SSH signing key each) and a few
   template cases per destination, walked by the demo's caseworkers through the real
   transitions, every commit made, checked and signed by the product.
2. In bulk: the remaining cases replay those templates under new case IDs, teams and
   caseworkers. Each version is re-sealed for its own recipients with real age encryption,
   bound to its new case ID and previous blob, and committed in a signed commit with the
   trailers cmgit writes, so `cmgit audit` and `cmgit validate` judge them as any other.
   The objects go straight into one pack (trees as deltas of their previous version) and
   `git index-pack` indexes it: no git process per commit, no index rewrite per commit.

With ``--layout 2`` the programme keeps its records as sealed entries (record format 2),
as `cmgit init` makes it; ``--layout 1`` makes it from the template without the migration
that brings them (a programme made before record format 2). The bulk writes per version
the open file and one entry holding the delta from the template's previous forms, sealed
to the replayed case's own new key, and at the end the keyring of every case in one
keyring commit.

The result is cached outside the repository, in ``$CMGIT_BENCH_CACHE`` (default
``~/.cache/cmgit-bench``), one folder per size and layout, and reused until FORMAT changes.

    python bench/generate.py 10000             # prints the folder
    python bench/generate.py 10000 --layout 2  # the same programme in sealed entries
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from cmgit import crypto, demo, entries, ids, records, signing
from cmgit.history import Git, encode_tree, format_message
from cmgit.keyring import ref, wrap
from cmgit.registry import CASEWORKER, PROGRAMME_MANAGER, SUPERVISOR
from cmgit.store import Repository, casekeys, init_repository, setup
from cmgit.store.setup import make_signer, staff_author
from cmgit.template import template_root

FORMAT = 9  # bump when what is generated changes, so old caches are not reused
TODAY = dt.date(2026, 10, 1)
HALF_DAY = 43_200
CASEWORKERS_PER_TEAM = 8
CASES_PER_TEAM = 3000
WORKER_NUMBERS = range(1, CASEWORKERS_PER_TEAM + 1)
CASELOAD_LIMIT = 500  # the settings' maximum: above CASES_PER_TEAM / CASEWORKERS_PER_TEAM
TEMPLATE_TEAM = "t01"
# Where the bulk cases stand: mostly early in the procedure, as in a programme that takes
# in more than it closes, for about three commits a case.
WEIGHTS = {
    "identified": 66,
    "registered": 14,
    "closed_consent_declined": 8,
    "assessment": 4,
    "immediate_action": 3,
    "closed_no_concern": 2,
    "case_planning": 1.2,
    "implementation": 1.2,
    "follow_up_review": 0.2,
    "closure_pending": 0.2,
    "post_closure_monitoring": 0.2,
    "archived": 0.2,
    "closed_death": 0.2,
    "closed_inaccessible": 0.2,
}
MAX_DELTA_DEPTH = 50  # git's own default for --depth
# Layout 2 (sealed entries): the migration that brings it, in the template `init` copies.
LAYOUT_MIGRATION = "schemas/migrations/0003-sealed-entries.yaml"
# Layout 2 programmes hold what the format-2 benchmarks act on: a second programme
# manager (a purge is authorised by another than who proposed it), and a caseworker
# holding LEAVER_CASES closed cases and nothing else, to be deactivated.
SECOND_MANAGER = "pm-002"
LEAVER = "cw-leaver"
LEAVER_CASES = 25
RETENTION_MONTHS = 12


def cache_root() -> Path:
    return Path(os.environ.get("CMGIT_BENCH_CACHE") or Path.home() / ".cache" / "cmgit-bench")


def programme(
    cases: int,
    *,
    layout: int = 1,
    seed: int = 11,
    cache: Path | None = None,
    quiet: bool = False,
) -> Path:
    """The folder of a generated programme of ``cases`` cases (``cases/``, ``keys/``),
    its records in ``layout`` 1 (one sealed block a file) or 2 (sealed entries)."""
    if layout not in (1, 2):
        raise ValueError("the layout is 1 or 2")
    base = (cache or cache_root()) / f"programme-{cases}-layout{layout}-f{FORMAT}"
    if (base / "ready").exists():
        return base
    partial = base.with_name(base.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    started = time.perf_counter()
    build(partial, cases, seed, layout=layout, quiet=quiet)
    (partial / "ready").write_text(f"{time.perf_counter() - started:.1f}\n")
    shutil.rmtree(base, ignore_errors=True)
    partial.rename(base)
    return base


# -- staff and templates, through cmgit -------------------------------------------------


def staff_plan(teams: list[str], layout: int = 1) -> Iterator[tuple[str, str, str]]:
    yield "pm-001", PROGRAMME_MANAGER, "programme"
    if layout == 2:
        yield SECOND_MANAGER, PROGRAMME_MANAGER, "programme"
        yield LEAVER, CASEWORKER, TEMPLATE_TEAM
    yield "aud-001", "auditor", "programme"
    for team in teams:
        yield f"sv-{team}", SUPERVISOR, team
        for n in range(1, CASEWORKERS_PER_TEAM + 1):
            yield f"cw-{team}-{n}", CASEWORKER, team


@dataclass
class Step:
    """One commit of a template case."""

    open: dict[str, Any]
    forms: dict[str, Any]
    subject: str
    trailers: list[tuple[str, str]]
    actor: str


def build(base: Path, cases: int, seed: int, *, layout: int, quiet: bool) -> None:
    rng = random.Random(seed)
    teams = [f"t{n:02d}" for n in range(1, max(2, -(-cases // CASES_PER_TEAM)) + 1)]

    def say(text: str) -> None:
        if not quiet:
            print(text, file=sys.stderr)

    plan = list(staff_plan(teams, layout))
    say(f"staff: {len(plan)} people in {len(teams)} teams")
    people = demo.make_people(base / "keys", iter(plan))
    admin = people["pm-001"]
    root = base / "cases"
    with template_of_layout(layout, base):
        init_repository(
            root,
            admin=admin.staff.id,
            recipient=admin.staff.recipient,
            team=admin.staff.team,
            signing_key=admin.staff.signing_key,
            prefix="CP",
            programme="Benchmark programme",
            signing_key_path=admin.signing_key,
        )
    repo = Repository.open(root)
    repo.signing_key_path = admin.signing_key
    for person in people.values():
        if person is not admin:
            repo.staff_add(admin.identities, person.staff)
    # The bulk gives each caseworker hundreds of open cases, and replays the templates'
    # guard results (G03c pass): audit recomputes the caseload limit, so the programme
    # allows the most the settings do, as one with such caseloads would.
    repo.settings_set(admin.identities, "caseload_limit", str(CASELOAD_LIMIT))
    if layout == 2:
        # Closed cases past their retention, so that one can be purged.
        repo.settings_set(admin.identities, "retention_period_months", str(RETENTION_MONTHS))
        repo = Repository.open(root)
        repo.signing_key_path = admin.signing_key

    per_destination = 1 if cases < 1000 else 2
    destinations = [d for d, w in WEIGHTS.items() if w] * per_destination
    destinations = destinations[:cases]
    say(f"templates: {len(destinations)} cases walked through cmgit")
    criteria = list(repo.settings["vulnerability_criteria"])
    template_ids = []
    for number, destination in enumerate(destinations, 1):
        repo.signing_key_path = None  # the journey signs as whoever acts
        worker = people[f"cw-{TEMPLATE_TEAM}-{1 + number % CASEWORKERS_PER_TEAM}"]
        start = TODAY - dt.timedelta(days=demo.DURATION[destination] + rng.randint(5, 60))
        journey = demo.Journey(
            repo, demo.Forms(rng, number), worker, people[f"sv-{TEMPLATE_TEAM}"], start, criteria
        )
        demo.walk(journey, destination, TODAY)
        template_ids.append((destination, journey.case_id))
    read = read_template if layout == 1 else read_template_entries
    templates = {case_id: read(repo, case_id, admin.identities) for _, case_id in template_ids}
    by_destination: dict[str, list[str]] = {}
    for destination, case_id in template_ids:
        by_destination.setdefault(destination, []).append(case_id)

    bulk = cases - len(template_ids)
    say(f"bulk: {bulk} cases replayed from the templates")
    replay(repo, people, teams, templates, by_destination, bulk, rng, say, layout=layout)


@contextlib.contextmanager
def template_of_layout(layout: int, base: Path) -> Iterator[None]:
    """`init` copies the template this cmgit ships (layout 2), or for layout 1 that
    template without the migration to sealed entries, as a cmgit before it shipped it."""
    if layout == 2:
        yield
        return
    old = base / "template-layout1"
    old.mkdir()
    setup.copy_template(template_root(), old)
    (old / LAYOUT_MIGRATION).unlink()
    try:
        with mock.patch.object(setup, "template_root", lambda: old):
            yield
    finally:
        shutil.rmtree(old)


def read_template(
    repo: Repository, case_id: str, identities: tuple[crypto.Identity, ...]
) -> list[Step]:
    path = ids.record_path(case_id)
    order = repo.schemas.open_fields
    steps = []
    for commit in repo.git.log(path):
        blob = repo.git.blob_id(commit.oid, path)
        assert blob is not None
        fields, armored = records.parse_file(repo.git.read_blob(blob), order)
        payload = records.parse_payload(repo.cipher.open(armored, identities))
        lines = commit.message.rstrip("\n").split("\n")
        trailers = [(k, v) for k, _, v in (line.partition(": ") for line in lines[2:])]
        steps.append(Step(fields, payload.forms, lines[0], trailers, commit.author))
    return steps


def read_template_entries(
    repo: Repository, case_id: str, identities: tuple[crypto.Identity, ...]
) -> list[Step]:
    """A template's steps in layout 2: each version's open file, and its forms folded
    from the entries written up to it, opened with the case key from the keyring."""
    path = ids.record_path(case_id)
    order = repo.schemas.open_fields
    key = wrap.unwrap(ref.read_case(repo.git, case_id), case_id, identities)
    forms: dict[str, Any] = {}
    steps = []
    for commit in repo.git.log(path):
        blob = repo.git.blob_id(commit.oid, path)
        assert blob is not None
        fields = entries.parse_open_file(repo.git.read_blob(blob), order)
        sealed = repo.git.blob_id(commit.oid, entries.entry_path(case_id, fields["version"]))
        if sealed is not None:
            plaintext = crypto.open_binary(repo.git.read_blob(sealed), key.identities())
            forms = entries.apply(forms, entries.parse_entry(plaintext).delta)
        lines = commit.message.rstrip("\n").split("\n")
        trailers = [(k, v) for k, _, v in (line.partition(": ") for line in lines[2:])]
        steps.append(Step(fields, forms, lines[0], trailers, commit.author))
    return steps


# -- the bulk, written straight into a pack ----------------------------------------------


def renamed(value: Any, names: dict[str, str]) -> Any:
    """``value`` with every string equal to a key of ``names`` replaced."""
    if isinstance(value, str):
        return names.get(value, value)
    if isinstance(value, list):
        return [renamed(v, names) for v in value]
    if isinstance(value, dict):
        return {k: renamed(v, names) for k, v in value.items()}
    return value


def replay(
    repo: Repository,
    people: dict[str, demo.Person],
    teams: list[str],
    templates: dict[str, list[Step]],
    by_destination: dict[str, list[str]],
    bulk: int,
    rng: random.Random,
    say: Any,
    *,
    layout: int = 1,
) -> None:
    git = repo.git
    order = repo.schemas.open_fields
    registry, settings = repo.registry, repo.settings
    keys = {
        pid: signing.load_private_key(p.signing_key)
        for pid, p in people.items()
        if p.signing_key is not None
    }
    recipients: dict[tuple[str, str], list[str]] = {}
    head = git.head()
    assert head is not None
    tree = Trees(git, head)
    pack = Pack()
    places, weights = zip(*[(d, w) for d, w in WEIGHTS.items() if w], strict=True)
    closed = [d for d in by_destination if d.startswith("closed_")]
    id_fields = casekeys.id_fields(repo.schemas)
    keyring: dict[str, dict[str, bytes]] = {}
    taken = set(templates)
    # Bulk commits follow the templates but are dated within the half day before them:
    # audit lets committer times go back a day at most and never again after that, and no
    # commit may lie ahead of the clock, or git's date-ordered walks (`old..new`) would
    # read the whole history. Several commits share a second (at most 4 per case).
    start = int(git.text("log", "-1", "--format=%ct", head)) - HALF_DAY
    per_second = -(-bulk * 4 // HALF_DAY)
    stamped = 0

    def cases() -> Iterator[Iterator[tuple[str, bytes]]]:
        for number in range(bulk):
            team = teams[number % len(teams)]
            while True:
                case_id = ids.new_case_id("CP", rng.randbytes(5))
                if case_id not in taken:
                    taken.add(case_id)
                    break
            if layout == 2 and number < LEAVER_CASES:  # the leaver's closed cases
                template = rng.choice(by_destination[rng.choice(closed)])
                names = {template: case_id}
                names.update({f"cw-{TEMPLATE_TEAM}-{n}": LEAVER for n in WORKER_NUMBERS})
                yield entry_versions(case_id, templates[template], names)
                continue
            template = rng.choice(by_destination[rng.choices(places, weights)[0]])
            names = {template: case_id, f"sv-{TEMPLATE_TEAM}": f"sv-{team}", TEMPLATE_TEAM: team}
            shift = rng.randint(1, CASEWORKERS_PER_TEAM)
            for n in WORKER_NUMBERS:
                names[f"cw-{TEMPLATE_TEAM}-{n}"] = (
                    f"cw-{team}-{1 + (n + shift) % CASEWORKERS_PER_TEAM}"
                )
            replayed = versions if layout == 1 else entry_versions
            yield replayed(case_id, templates[template], names)

    def versions(
        case_id: str, steps: list[Step], names: dict[str, str]
    ) -> Iterator[tuple[str, bytes]]:
        path = ids.record_path(case_id)
        prev: str | None = None
        for step in steps:
            record = records.Record(renamed(step.open, names), renamed(step.forms, names))
            who = (record.open["team"], record.open["caseworker"])
            if who not in recipients:
                recipients[who] = registry.recipients_for(*who, settings)
            armored = repo.cipher.seal(records.seal_payload(record, prev), recipients[who])
            blob = pack.add("blob", records.render_file(record.open, order, armored))
            prev = blob
            actor = names.get(step.actor, step.actor)
            trailers = [(k, names.get(v, v)) for k, v in step.trailers]
            message = format_message(step.subject.replace(step.open["case_id"], case_id), trailers)
            yield path, commit_body(tree.commit({path: blob}, pack), actor, message)

    def entry_versions(
        case_id: str, steps: list[Step], names: dict[str, str]
    ) -> Iterator[tuple[str, bytes]]:
        """Layout 2: per version the open file and, where the forms changed, one entry
        holding the delta from the previous version's, sealed to the case's own key."""
        path = ids.record_path(case_id)
        key = wrap.new_case_key(case_id)
        before: dict[str, Any] = {}
        for step in steps:
            fields = renamed(step.open, names)
            forms = renamed(step.forms, names)
            files = {path: pack.add("blob", entries.render_open_file(fields, order))}
            change = entries.delta(before, forms, id_fields)
            if change is not None:
                plaintext = entries.entry_plaintext(case_id, fields["version"], change)
                sealed = crypto.seal_binary(plaintext, [key.recipient])
                files[entries.entry_path(case_id, fields["version"])] = pack.add("blob", sealed)
            before = forms
            actor = names.get(step.actor, step.actor)
            trailers = [(k, names.get(v, v)) for k, v in step.trailers]
            message = format_message(step.subject.replace(step.open["case_id"], case_id), trailers)
            yield path, commit_body(tree.commit(files, pack), actor, message)
        keyring[case_id] = casekeys.wrapped(repo, key, fields)

    # Interleave the cases as a busy programme does: a window of cases in progress.
    window: list[Iterator[tuple[str, bytes]]] = []
    source = cases()
    made = 0
    started = time.perf_counter()
    parent = head

    def commit_body(tree_id: str, actor: str, message: str) -> bytes:
        nonlocal stamped
        stamped += 1
        person = f"{actor} <{actor}@cmgit.invalid> {start + stamped // per_second} +0000"
        header = f"tree {tree_id}\nparent {parent}\nauthor {person}\ncommitter {person}\n"
        signature = signing.sign((header + "\n" + message).encode(), keys[actor])
        return (header + "gpgsig " + signature.replace("\n", "\n ") + "\n\n" + message).encode()

    while True:
        while len(window) < 64:
            nxt = next(source, None)
            if nxt is None:
                break
            window.append(nxt)
        if not window:
            break
        current = window[rng.randrange(len(window))]
        step = next(current, None)
        if step is None:
            window.remove(current)
            continue
        parent = pack.add("commit", step[1])
        made += 1
        if made % 20000 == 0:
            rate = made / (time.perf_counter() - started)
            say(f"  {made} commits, {rate:.0f}/s")
    if made:
        say(f"indexing {len(pack.offsets)} objects")
        pack.finish(git)
        git.run("update-ref", "-m", "bench: generated", "refs/heads/main", parent, head)
        git.run("reset", "-q", "--hard")
    say(f"{made} bulk commits")
    if keyring:
        say(f"keyring: {len(keyring)} case keys in one keyring commit")
        admin = people["pm-001"]
        sign = make_signer(
            admin.signing_key, admin.staff, bool(settings.get("require_signed_commits"))
        )
        trailers = [("Cmgit-Actor", admin.staff.id), ("Cmgit-Role", admin.staff.role)]
        ref.update(git, keyring, staff_author(admin.staff), sign=sign, trailers=trailers)


class Trees:
    """The tree of HEAD kept in memory, folder by folder (read from git when first
    written to); a commit rewrites the folders on the paths it writes, and the root."""

    def __init__(self, git: Git, head: str):
        self.git = git
        self.folders = {"": dict(git.objects.tree(git.objects.commit_tree(head)))}

    def folder(self, path: str) -> dict[str, tuple[str, str]]:
        found = self.folders.get(path)
        if found is None:
            parent, _, name = path.rpartition("/")
            entry = self.folder(parent).get(name)
            found = dict(self.git.objects.tree(entry[1])) if entry else {}
            self.folders[path] = found
        return found

    def commit(self, files: dict[str, str], pack: Pack) -> str:
        """The root tree with ``files`` (path to blob id) written. Each folder's tree is
        stored as a delta of its previous version (the folder's path names the chain)."""
        dirty = set()
        for path, blob in files.items():
            folder, _, name = path.rpartition("/")
            self.folder(folder)[name] = ("100644", blob)
            while folder:
                dirty.add(folder)
                folder = folder.rpartition("/")[0]
        for folder in sorted(dirty, key=lambda f: (-f.count("/"), f)):
            parent, _, name = folder.rpartition("/")
            oid = pack.add("tree", encode_tree(self.folders[folder]), folder)
            self.folder(parent)[name] = ("40000", oid)
        return pack.add("tree", encode_tree(self.folders[""]))


class Pack:
    """A git pack written in memory-light streaming fashion to a temporary file.

    Trees are stored as deltas of the previous version of the same tree (``chain``),
    each delta one copy-insert-copy: a record tree differs from its last version in one
    entry, so a 100,000-case history stays a few hundred megabytes.
    """

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by finish()
        self.file.write(b"PACK" + struct.pack(">II", 2, 0))
        self.offsets: dict[str, int] = {}
        self.chains: dict[str, tuple[int, bytes, int]] = {}  # chain -> offset, data, depth

    def add(self, kind: str, data: bytes, chain: str | None = None) -> str:
        oid = hashlib.sha1(b"%s %d\0%s" % (kind.encode(), len(data), data)).hexdigest()
        if oid in self.offsets:
            return oid
        offset = self.file.tell()
        last = self.chains.get(chain) if chain else None
        if last is not None and last[2] < MAX_DELTA_DEPTH:
            delta = make_delta(last[1], data)
            self.file.write(entry_header(6, len(delta)) + ofs_encode(offset - last[0]))
            self.file.write(zlib.compress(delta, 1))
            depth = last[2] + 1
        else:
            self.file.write(entry_header(TYPES[kind], len(data)) + zlib.compress(data, 1))
            depth = 0
        if chain:
            self.chains[chain] = (offset, data, depth)
        self.offsets[oid] = offset
        return oid

    def finish(self, git: Git) -> None:
        self.file.seek(8)
        self.file.write(struct.pack(">I", len(self.offsets)))
        self.file.seek(0)
        digest = hashlib.sha1()
        while chunk := self.file.read(1 << 20):
            digest.update(chunk)
        self.file.write(digest.digest())
        self.file.seek(0)
        subprocess.run(
            ["git", "-C", str(git.root), "index-pack", "--stdin"],
            stdin=self.file,
            stdout=subprocess.DEVNULL,
            check=True,
        )
        self.file.close()


TYPES = {"commit": 1, "tree": 2, "blob": 3}


def entry_header(kind: int, size: int) -> bytes:
    out = bytearray([(kind << 4) | (size & 0x0F)])
    size >>= 4
    while size:
        out[-1] |= 0x80
        out.append(size & 0x7F)
        size >>= 7
    return bytes(out)


def ofs_encode(distance: int) -> bytes:
    out = [distance & 0x7F]
    distance >>= 7
    while distance:
        distance -= 1
        out.append(0x80 | (distance & 0x7F))
        distance >>= 7
    return bytes(reversed(out))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _copy(offset: int, size: int) -> bytes:
    out = bytearray()
    while size:
        part = min(size, 0xFFFFFF)
        op, args = 0x80, bytearray()
        for i in range(4):
            if (offset >> (8 * i)) & 0xFF:
                op |= 1 << i
                args.append((offset >> (8 * i)) & 0xFF)
        for i in range(3):
            if (part >> (8 * i)) & 0xFF:
                op |= 1 << (4 + i)
                args.append((part >> (8 * i)) & 0xFF)
        out += bytes([op]) + args
        offset += part
        size -= part
    return bytes(out)


def make_delta(source: bytes, target: bytes) -> bytes:
    """A git delta: copy the common prefix and suffix, insert what lies between."""
    limit = min(len(source), len(target))
    prefix = 0
    step = 4096
    while step:  # a binary-search-like scan: compare big slices first
        while (
            prefix + step <= limit
            and source[prefix : prefix + step] == target[prefix : prefix + step]
        ):
            prefix += step
        step //= 2
    suffix = 0
    step = 4096
    while step:
        while (
            suffix + step <= limit - prefix
            and source[len(source) - suffix - step : len(source) - suffix]
            == target[len(target) - suffix - step : len(target) - suffix]
        ):
            suffix += step
        step //= 2
    middle = target[prefix : len(target) - suffix]
    out = bytearray(_varint(len(source)) + _varint(len(target)))
    if prefix:
        out += _copy(0, prefix)
    for i in range(0, len(middle), 127):
        piece = middle[i : i + 127]
        out += bytes([len(piece)]) + piece
    if suffix:
        out += _copy(len(source) - suffix, suffix)
    return bytes(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", type=int)
    parser.add_argument(
        "--layout", type=int, choices=(1, 2), default=1, help="2: records as sealed entries"
    )
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    base = programme(args.cases, layout=args.layout, cache=args.cache)
    print(json.dumps({"folder": str(base), "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
