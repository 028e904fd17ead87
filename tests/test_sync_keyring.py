"""Two offices of a programme in record format 2 share the keyring through the central
repository: `cmgit sync` carries it, the central hook checks it, a purge travels."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from cmgit import crypto
from cmgit.history import Git, actor_author, format_message
from cmgit.keyring import ref, wrap
from cmgit.store import casekeys

from .conftest import CANARY, STAFF, Programme, form
from .test_hooks import run_git
from .test_sealed_entries_e2e import (
    closed_long_ago,
    every_age_plaintext,
    second_manager,
)
from .test_signing import require_signatures
from .test_sync import in_office


def central_of(
    programme: Programme, tmp_path: Path, *, judged: bool = False, packed: bool = False
) -> Path:
    """A central repository made from office A's (the programme's own repository) branch,
    set up by `cmgit hooks install --server`; A's first sync pushes the keyring to it.
    Unless ``judged``, without the pre-receive hook, as on a host that runs none (audit
    --server-checks judges such a central): these tests are about what travels, and the
    hook's judgement of the records' commits is audit's (tested with it). With ``packed``
    the central keeps every push as a pack."""
    central = tmp_path / "central.git"
    made = run_git(tmp_path, "clone", "-q", "--bare", str(programme.root), str(central))
    assert made.returncode == 0
    installed = programme.cli(
        "-C", str(central), "hooks", "install", "--server", "--allow-unsigned", as_=None
    )
    assert installed.exit_code == 0, installed.output
    for key, value in (("gc.auto", "0"), ("uploadpack.allowFilter", "true")):
        assert run_git(central, "config", "--get", key).stdout.strip() == value
    assert (central / "hooks" / "post-receive").exists()
    if not judged:
        (central / "hooks" / "pre-receive").unlink()
    if packed:  # every push kept as the pack it came in, as a large push is
        assert run_git(central, "config", "receive.unpackLimit", "1").returncode == 0
    run_git(programme.root, "remote", "add", "origin", str(central))
    first = in_office(programme, programme.root, "sync", as_="pm-001")
    assert first.exit_code == 0, first.output
    return central


def clone_office(programme: Programme, central: Path, where: Path) -> Path:
    """An office's clone made with `cmgit clone`: the branch, the keyring as the central
    holds it, the client hooks and git's commit-graph."""
    cloned = programme.cli("clone", str(central), str(where), as_=None)
    assert cloned.exit_code == 0, cloned.output
    listing = "for-each-ref", "--format=%(refname) %(objectname)", ref.KEYRING_PREFIX
    assert run_git(where, *listing).stdout == run_git(central, *listing).stdout
    assert (where / ".git" / "hooks" / "pre-commit").exists()
    graph = where / ".git" / "objects" / "info"
    assert (graph / "commit-graph").exists() or (graph / "commit-graphs").exists()
    return where


def synced(programme: Programme, office: Path, as_: str = "cw-north-1") -> str:
    done = in_office(programme, office, "sync", as_=as_)
    assert done.exit_code == 0, done.output
    return done.stdout


def note(programme: Programme, office: Path, case_id: str, text: str, as_: str) -> None:
    doc = {"note": {**form("note")["note"], "text": text}}
    made = in_office(
        programme,
        office,
        "record",
        case_id,
        "note",
        "--from",
        programme.form_file("note", doc),
        as_=as_,
    )
    assert made.exit_code == 0, made.output


def notes(programme: Programme, office: Path, case_id: str, as_: str) -> list[str]:
    shown = in_office(programme, office, "show", case_id, "--json", as_=as_)
    assert shown.exit_code == 0, shown.output
    return [item["text"] for item in json.loads(shown.stdout).get("note", [])]


def test_cmgit_clone_of_a_programme_without_case_keys(programme: Programme, tmp_path: Path) -> None:
    central = tmp_path / "central.git"
    made = run_git(tmp_path, "clone", "-q", "--bare", str(programme.root), str(central))
    assert made.returncode == 0
    case_id = programme.new_case()
    office = clone_office(programme, central, tmp_path / "office")
    assert run_git(office, "for-each-ref", ref.KEYRING_PREFIX).stdout == ""
    assert in_office(programme, office, "list", as_=None).exit_code == 0
    assert case_id  # made after the central copy: not in the clone
    assert case_id not in in_office(programme, office, "list", as_=None).stdout


def test_a_case_made_in_one_office_opens_in_the_other(programme: Programme, tmp_path: Path) -> None:
    central = central_of(programme, tmp_path)
    a = programme.root
    b = clone_office(programme, central, tmp_path / "office-b")
    case_id = programme.new_case()  # in office A, after B cloned
    synced(programme, a)
    assert run_git(central, "rev-parse", "-q", "--verify", ref.shard_ref(case_id)).returncode == 0
    synced(programme, b)
    note(programme, b, case_id, f"{CANARY} from b", as_="cw-north-1")
    synced(programme, b)
    synced(programme, a)
    assert notes(programme, a, case_id, "cw-north-1") == [f"{CANARY} from b"]


def reassign(programme: Programme, office: Path, case_id: str) -> None:
    """The case moved from cw-north-1 to cw-north-2 by their supervisor: a new key
    generation, wrapped without cw-north-1."""
    moved = in_office(
        programme,
        office,
        "assign",
        case_id,
        "cw-north-2",
        "--reason",
        "caseload_balancing",
        as_="sv-north",
    )
    assert moved.exit_code == 0, moved.output


def reassigned_in_a(
    programme: Programme, tmp_path: Path, *, noted: bool = False
) -> tuple[str, Path, Path, Path]:
    """A case (with a note, if ``noted``) in two offices A and B of a programme in record
    format 2, then reassigned in A from cw-north-1 to cw-north-2 (a new key generation):
    the case, the central repository, A and B."""
    case_id = programme.new_case()
    if noted:
        note(programme, programme.root, case_id, f"{CANARY} first", as_="cw-north-1")
    central = central_of(programme, tmp_path)
    a = programme.root
    b = clone_office(programme, central, tmp_path / "office-b")
    reassign(programme, a, case_id)
    return case_id, central, a, b


def test_a_reassignment_in_one_office_and_a_note_in_the_other_both_land(
    programme: Programme, tmp_path: Path
) -> None:
    case_id, _central, a, b = reassigned_in_a(programme, tmp_path)
    note(programme, b, case_id, f"{CANARY} from b", as_="cw-north-1")
    synced(programme, a, as_="sv-north")
    synced(programme, b, as_="sv-north")
    synced(programme, a, as_="sv-north")
    for office in (a, b):
        assert notes(programme, office, case_id, "cw-north-2") == [f"{CANARY} from b"]
        refused = in_office(programme, office, "show", case_id, as_="cw-north-1")
        assert refused.exit_code == 5


def add_supervisor(programme: Programme, office: Path, staff_id: str) -> None:
    secret, recipient = crypto.generate_identity()
    crypto.write_identity_file(programme.key(staff_id), secret, recipient)
    made = in_office(
        programme,
        office,
        "staff",
        "add",
        staff_id,
        "--role",
        "supervisor",
        "--team",
        "north",
        "--recipient",
        recipient,
        as_="pm-001",
    )
    assert made.exit_code == 0, made.output


def test_a_key_rewrapped_in_both_offices_keeps_every_generation(
    programme: Programme, tmp_path: Path
) -> None:
    """A reassignment in one office, a new reader in the other: the syncing programme
    manager merges the two wrappings; the new reader and the new caseworker read the case
    in both offices, the caseworker taken off it in neither."""
    case_id, central, a, b = reassigned_in_a(programme, tmp_path, noted=True)
    add_supervisor(programme, b, "sv-north-2")
    synced(programme, a, as_="sv-north")
    before = wrap.unwrap(
        ref.read_case(Git(a), case_id), case_id, programme.identities("pm-001")
    ).secrets
    synced(programme, b, as_="pm-001")
    synced(programme, a, as_="pm-001")
    for office in (a, b):
        key = wrap.unwrap(
            ref.read_case(Git(office), case_id), case_id, programme.identities("pm-001")
        )
        assert key.secrets[: len(before)] == before and len(key.secrets) == len(before) + 1
        for reader in ("cw-north-2", "sv-north-2"):
            assert notes(programme, office, case_id, reader) == [f"{CANARY} first"]
        assert in_office(programme, office, "show", case_id, as_="cw-north-1").exit_code == 5
    assert (
        run_git(a, "rev-parse", ref.shard_ref(case_id)).stdout
        == run_git(central, "rev-parse", ref.shard_ref(case_id)).stdout
    )


def test_a_clone_that_cannot_open_a_case_changed_on_both_sides_is_told_who_can(
    programme: Programme, tmp_path: Path
) -> None:
    case_id, _central, a, b = reassigned_in_a(programme, tmp_path)
    synced(programme, a, as_="sv-north")
    add_supervisor(programme, b, "sv-north-2")
    refused = in_office(programme, b, "sync", as_="cw-south-1")
    assert refused.exit_code != 0
    assert case_id in refused.output and "cmgit sync" in refused.output


def keyring_objects(office: Path, case_id: str) -> list[str]:
    """The blobs and the folder of a case in its keyring shard."""
    shard = ref.shard_ref(case_id)
    listing = run_git(office, "ls-tree", "-r", "-t", shard, f"{case_id}/").stdout
    return [line.split()[2] for line in listing.splitlines()]


def test_a_purge_in_one_office_destroys_the_keys_centrally_and_in_the_other(
    programme: Programme, tmp_path: Path
) -> None:
    second_manager(programme)
    case_id = closed_long_ago(programme)
    kept = programme.new_case()
    central = central_of(programme, tmp_path)
    a = programme.root
    b = clone_office(programme, central, tmp_path / "office-b")
    doomed = keyring_objects(a, case_id)
    assert doomed and doomed == keyring_objects(b, case_id) == keyring_objects(central, case_id)
    later = "2028-06-01"
    for manager in ("pm-001", "pm-002"):
        done = programme.cli(
            "-C",
            str(a),
            "purge",
            case_id,
            "--reason",
            "retention_ended",
            as_=manager,
            today=later,
        )
        assert done.exit_code == 0, done.output
    synced(programme, a, as_="pm-001")
    synced(programme, b, as_="cw-north-1")
    for office in (a, central, b):
        for oid in doomed:
            assert run_git(office, "cat-file", "-e", oid).returncode != 0, (office, oid)
        assert keyring_objects(office, case_id) == []
    # Every staff identity tried on every object left, reachable or not, in the central
    # repository and the other office: none opens the case's key.
    staff = [staff_id for staff_id, *_ in STAFF] + ["pm-002"]
    everyone = [i for staff_id in staff for i in programme.identities(staff_id)]
    marker = f"# cmgit case key {case_id}".encode()
    for office in (central, b):
        opened = every_age_plaintext(office, everyone)
        assert not [p for p in opened if p.startswith(marker)], office
    assert notes(programme, b, kept, "cw-north-1") == []
    gone = in_office(programme, b, "show", case_id, as_="pm-001")
    assert gone.exit_code == 5
    # A key for the erased case never comes back through the central hook.
    judged = programme.cli(
        "-C", str(central), "hooks", "install", "--server", "--allow-unsigned", as_=None
    )
    assert judged.exit_code == 0, judged.output
    reader = programme.identities("pm-001")[0].recipient
    back = wrap.wrap(wrap.new_case_key(case_id), [reader], [], 0)
    shard = ref.shard_ref(case_id)
    pushed = run_git(
        a, "push", "origin", f"+{forged_shard(programme, case_id, dict(back))}:{shard}"
    )
    assert pushed.returncode != 0 and "erased" in pushed.stderr, pushed.stderr


def forged_shard(
    programme: Programme, case_id: str, files: dict[str, bytes | None], *, parented: bool = False
) -> str:
    """A keyring shard commit made as cmgit makes one (by sv-north), from the case's
    shard with ``files`` changed in its folder; not on any ref."""
    git = Git(programme.root)
    head = ref.head(git, case_id)
    assert head is not None
    message = format_message(
        ref.SUBJECT,
        [ref.KEYRING_TRAILER, ("Cmgit-Actor", "sv-north"), ("Cmgit-Role", "supervisor")],
    )
    changes = {f"{case_id}/{name}": data for name, data in files.items()}
    commit, _ = git.make_commit(
        changes, message, actor_author("sv-north"), head if parented else None, base=head
    )
    return commit


def test_the_central_hook_judges_every_keyring_shard_pushed(
    programme: Programme, tmp_path: Path
) -> None:
    case_id = programme.new_case()
    central = central_of(programme, tmp_path, judged=True)  # the keyring went through it
    shard = ref.shard_ref(case_id)
    published = run_git(central, "rev-parse", shard).stdout
    assert published == run_git(programme.root, "rev-parse", shard).stdout
    repo = programme.repo()
    key = casekeys.open_key(repo, case_id, programme.identities("pm-001"))
    fields = repo.load_open(case_id).record.open
    readers = casekeys.staff_recipients(repo, fields)
    outsider = programme.identities("cw-south-1")[0].recipient
    one_too_many = wrap.wrap(key, [*readers, outsider], [], 0)
    good = wrap.wrap(key, readers, [], 0)
    attempts = {
        "stanzas": forged_shard(programme, case_id, dict(one_too_many)),
        "unexpected file": forged_shard(
            programme, case_id, {**good, "extra.age": good["staff.age"]}
        ),
        "without parents": forged_shard(programme, case_id, dict(good), parented=True),
    }
    for why, commit in attempts.items():
        pushed = run_git(programme.root, "push", "origin", f"+{commit}:{shard}")
        assert pushed.returncode != 0 and why in pushed.stderr, (why, pushed.stderr)
        assert run_git(central, "rev-parse", shard).stdout == published
    deleted = run_git(programme.root, "push", "origin", f":{shard}")
    assert deleted.returncode != 0
    assert run_git(central, "rev-parse", shard).stdout == published
    accepted = run_git(
        programme.root, "push", "origin", f"+{forged_shard(programme, case_id, dict(good))}:{shard}"
    )
    assert accepted.returncode == 0, accepted.stderr


def test_server_checks_judge_the_keyring_of_a_mirror(programme: Programme, tmp_path: Path) -> None:
    case_id = programme.new_case()
    central = central_of(programme, tmp_path)
    mirror = tmp_path / "mirror.git"
    assert run_git(tmp_path, "clone", "-q", "--mirror", str(central), str(mirror)).returncode == 0
    shard = ref.shard_ref(case_id)
    assert run_git(mirror, "rev-parse", shard).stdout == run_git(central, "rev-parse", shard).stdout
    checked = programme.cli("-C", str(mirror), "audit", "--server-checks", as_=None)
    assert not [line for line in checked.output.splitlines() if ref.KEYRING_PREFIX in line]
    repo = programme.repo()
    key = casekeys.open_key(repo, case_id, programme.identities("pm-001"))
    extra = wrap.wrap(key, [programme.identities("cw-south-1")[0].recipient], [], 0)
    forged = forged_shard(programme, case_id, {**extra, "extra.age": extra["staff.age"]})
    assert run_git(programme.root, "push", "-q", str(mirror), f"+{forged}:{shard}").returncode == 0
    flagged = programme.cli("-C", str(mirror), "audit", "--server-checks", as_=None)
    assert flagged.exit_code != 0
    named = [line for line in flagged.output.splitlines() if shard in line]
    assert any("unexpected file" in line for line in named), flagged.output
    assert any("stanzas" in line for line in named), flagged.output


def test_a_central_restored_from_its_backup_serves_a_new_clone(
    programme: Programme, tmp_path: Path
) -> None:
    """The README's backup and restore, step by step: a mirror of the central repository,
    the central destroyed and made anew from it, and a caseworker's new clone syncs and
    opens their case."""
    case_id = programme.new_case()
    note(programme, programme.root, case_id, f"{CANARY} kept", as_="cw-north-1")
    central = central_of(programme, tmp_path)
    backup = tmp_path / "cases-backup.git"
    assert run_git(tmp_path, "clone", "-q", "--mirror", str(central), str(backup)).returncode == 0
    assert run_git(backup, "remote", "update", "--prune").returncode == 0
    assert run_git(backup, "gc", "--prune=now", "--quiet").returncode == 0
    shutil.rmtree(central)
    assert run_git(tmp_path, "init", "-q", "--bare", "-b", "main", str(central)).returncode == 0
    for refspec in ("refs/heads/*:refs/heads/*", "refs/cmgit/keyring/*:refs/cmgit/keyring/*"):
        fetched = run_git(central, "fetch", "-q", "--no-tags", str(backup), refspec)
        assert fetched.returncode == 0, fetched.stderr
    installed = programme.cli(
        "-C", str(central), "hooks", "install", "--server", "--allow-unsigned", as_=None
    )
    assert installed.exit_code == 0, installed.output
    office = clone_office(programme, central, tmp_path / "office-c")
    synced(programme, office, as_="cw-north-1")
    assert notes(programme, office, case_id, "cw-north-1") == [f"{CANARY} kept"]
    synced(programme, programme.root, as_="cw-north-1")


def packs_holding(office: Path, oids: list[str]) -> set[str]:
    """The packs of a repository that hold any of ``oids``."""
    found = set()
    for index in (office / "objects" / "pack").glob("pack-*.idx"):
        listed = subprocess_show_index(index)
        if set(oids) & listed:
            found.add(index.stem)
    return found


def subprocess_show_index(index: Path) -> set[str]:
    shown = subprocess.run(
        ["git", "show-index"], input=index.read_bytes(), capture_output=True, check=True
    ).stdout.decode()
    return {line.split()[1] for line in shown.splitlines()}


def test_cmgit_gc_packs_the_records_apart_from_the_keyring(
    programme: Programme, tmp_path: Path
) -> None:
    case_id = programme.new_case()
    central = central_of(programme, tmp_path)
    for office, git_dir in ((programme.root, programme.root / ".git"), (central, central)):
        keyring = keyring_objects(office, case_id)
        records = run_git(
            office, "rev-list", "--objects", "--no-object-names", "main"
        ).stdout.split()
        done = programme.cli("-C", str(office), "gc", as_=None)
        assert done.exit_code == 0, done.output
        made = packs_holding(git_dir, records)
        assert made and not packs_holding(git_dir, keyring), office
        for oid in keyring:
            assert (git_dir / "objects" / oid[:2] / oid[2:]).exists()
        assert run_git(office, "fsck", "--no-dangling").returncode == 0


def test_a_keyring_wrapped_for_staff_the_central_does_not_know_yet_follows_main(
    programme: Programme, tmp_path: Path
) -> None:
    """A new supervisor is a reader of their team's cases: the keyring wrapped for them is
    refused by the central hook until the registry naming them is there, so the sync
    pushes main first and the keyring again."""
    case_id = programme.new_case()
    central = central_of(programme, tmp_path, judged=True)
    b = clone_office(programme, central, tmp_path / "office-b")
    add_supervisor(programme, b, "sv-north-2")
    synced(programme, b, as_="pm-001")
    shard = ref.shard_ref(case_id)
    assert run_git(central, "rev-parse", shard).stdout == run_git(b, "rev-parse", shard).stdout
    assert run_git(central, "rev-parse", "main").stdout == run_git(b, "rev-parse", "HEAD").stdout
    synced(programme, programme.root, as_="sv-north")
    assert in_office(programme, programme.root, "show", case_id, as_="sv-north-2").exit_code == 0


def test_a_merged_key_is_wrapped_to_the_readers_of_the_merged_head(
    programme: Programme, tmp_path: Path
) -> None:
    """A new supervisor in one office, a reassignment in the other, synced from the
    reassigning office: the merged key is wrapped for the registry both bring together."""
    case_id = programme.new_case()
    note(programme, programme.root, case_id, f"{CANARY} first", as_="cw-north-1")
    central = central_of(programme, tmp_path)
    a = programme.root
    b = clone_office(programme, central, tmp_path / "office-b")
    add_supervisor(programme, a, "sv-north-2")
    synced(programme, a, as_="pm-001")
    reassign(programme, b, case_id)
    synced(programme, b, as_="sv-north")
    synced(programme, a, as_="sv-north")
    for office in (a, b):
        for reader in ("cw-north-2", "sv-north-2"):
            assert notes(programme, office, case_id, reader) == [f"{CANARY} first"]
        assert in_office(programme, office, "show", case_id, as_="cw-north-1").exit_code == 5
    checked = in_office(programme, b, "validate", as_="pm-001")
    assert checked.exit_code == 0, checked.output


def test_a_keyring_pushed_as_a_pack_is_pruned_from_it_centrally(
    programme: Programme, tmp_path: Path
) -> None:
    case_id = programme.new_case()
    other = programme.new_case()
    central = central_of(programme, tmp_path, packed=True)
    listed = (central / "cmgit" / ref.PACK_LIST).read_text().split()
    assert listed and packs_holding(central, keyring_objects(central, case_id)) <= set(listed)
    doomed = keyring_objects(central, case_id)
    reassign(programme, programme.root, case_id)
    synced(programme, programme.root, as_="sv-north")
    for oid in doomed:
        assert run_git(central, "cat-file", "-e", oid).returncode != 0
    assert notes(programme, programme.root, other, "cw-north-1") == []
    assert run_git(central, "fsck", "--no-dangling").returncode == 0


def test_where_signatures_are_required_the_hook_takes_signed_keyring_shards_only(
    programme: Programme, tmp_path: Path
) -> None:
    _, cw_key = require_signatures(programme, tmp_path)
    created = programme.cli(
        "new",
        "--from",
        programme.form_file("identification"),
        env={"CMGIT_SIGNING_KEY": str(cw_key)},
    )
    assert created.exit_code == 0, created.output
    case_id = created.stdout.strip()
    central = central_of(programme, tmp_path, judged=True)  # signed shards went through
    shard = ref.shard_ref(case_id)
    assert (
        run_git(central, "rev-parse", shard).stdout
        == run_git(programme.root, "rev-parse", shard).stdout
    )
    repo = programme.repo()
    key = casekeys.open_key(repo, case_id, programme.identities("pm-001"))
    readers = casekeys.staff_recipients(repo, repo.load_open(case_id).record.open)
    unsigned = forged_shard(programme, case_id, dict(wrap.wrap(key, readers, [], 0)))
    pushed = run_git(programme.root, "push", "origin", f"+{unsigned}:{shard}")
    assert pushed.returncode != 0 and "unsigned" in pushed.stderr, pushed.stderr
