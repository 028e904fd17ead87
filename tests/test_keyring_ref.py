"""The keyring ref in real git repositories: replaced by parentless commits, its replaced
objects deleted at once, loose or in its own packs, and the records' packs never touched."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cmgit.errors import BadCaseId, IntegrityError, RepositoryBusy
from cmgit.history import Git, actor_author, clean_env
from cmgit.ids import CROCKFORD
from cmgit.keyring import ref

AUTHOR = actor_author("pm-001")
ACTOR = [("Cmgit-Actor", "pm-001"), ("Cmgit-Role", "programme_manager")]
CASES = ("CP-7K2M9QX4", "CP-7KA00001", "CP-3B4C5D6E")


def git_cli(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """git run as a person would, for setting up and for checking from outside cmgit."""
    person = ["-c", "user.name=Tester", "-c", "user.email=tester@example.invalid"]
    return subprocess.run(
        ["git", "-C", str(root), *person, *args], capture_output=True, env=clean_env(), check=False
    )


def has_object(root: Path, oid: str) -> bool:
    return git_cli(root, "cat-file", "-e", oid).returncode == 0


def make_repo(root: Path) -> Git:
    root.mkdir()
    git_cli(root, "init", "-q", "-b", "main")
    (root / "README").write_text("records\n")
    git_cli(root, "add", "README")
    git_cli(root, "commit", "-q", "-m", "first")
    return Git(root)


def wrapped(case_id: str, mark: str) -> dict[str, bytes]:
    """Stand-ins for a case's wrapped key files: distinct bytes per case and per write,
    as age files are."""
    return {
        "staff.age": f"staff {case_id} {mark}".encode() + os.urandom(16),
        "recovery.rc-1.rc-2.age": f"recovery {case_id} {mark}".encode() + os.urandom(16),
    }


def blob_ids(git: Git, case_id: str) -> list[str]:
    listing = git.ls_tree(ref.shard_ref(case_id), case_id)
    return [entry.oid for entry in listing]


def reachable(git: Git, *revs: str) -> list[str]:
    listing = git_cli(git.root, "rev-list", "--objects", *revs).stdout.decode()
    return [line.split()[0] for line in listing.splitlines()]


def reachable_count(git: Git) -> int:
    """The objects that main and the keyring reach."""
    return len(set(reachable(git, "--all")))


def loose_count(git: Git) -> int:
    """The objects of the repository, loose or packed (the test repositories' are loose)."""
    listing = git_cli(git.root, "cat-file", "--batch-all-objects", "--batch-check").stdout
    return len(listing.splitlines())


def loose_objects(git: Git) -> set[str]:
    folder = git.objects.folder
    return {path.parent.name + path.name for path in folder.glob("[0-9a-f][0-9a-f]/*")}


def connected(root: Path) -> bool:
    proc = git_cli(root, "fsck", "--connectivity-only", "--no-dangling")
    return proc.returncode == 0 and not proc.stdout.strip() and b"error" not in proc.stderr


def other_packs(git: Git) -> dict[str, str]:
    """The packs that are not the keyring's, each with a digest of its files' bytes."""
    listed = set(ref.keyring_packs(git))
    folder = git.objects.folder / "pack"
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.iterdir())
        if path.name.split(".")[0] not in listed
    }


def records_packs_names(git: Git) -> set[str]:
    return {name.split(".")[0] for name in other_packs(git)}


@pytest.fixture
def repo(tmp_path: Path) -> Git:
    return make_repo(tmp_path / "repo")


def make_central(tmp_path: Path) -> tuple[Git, Path]:
    """A bare central repository holding main, as the clones' origin."""
    origin = make_repo(tmp_path / "origin")
    central_root = tmp_path / "central.git"
    git_cli(tmp_path, "clone", "-q", "--no-local", "--bare", str(origin.root), str(central_root))
    return Git(central_root), central_root


def make_clone(tmp_path: Path, central_root: Path) -> Git:
    clone_root = tmp_path / "clone"
    git_cli(tmp_path, "clone", "-q", "--no-local", str(central_root), str(clone_root))
    git_cli(clone_root, "config", "fetch.unpackLimit", "1")  # a pack, however small
    return Git(clone_root)


def test_cases_written_and_read_back(repo: Git) -> None:
    written = {case_id: wrapped(case_id, "1") for case_id in CASES}
    commits = ref.update(repo, written, AUTHOR, trailers=ACTOR)
    assert commits == ref.heads(repo)
    assert sorted(commits) == ["3B", "7K"]  # two cases share the shard 7K
    for case_id in CASES:
        assert ref.read_case(repo, case_id) == written[case_id]
        assert ref.head(repo, case_id) == commits[ref.shard_of(case_id)]
    assert sorted(ref.case_ids(repo)) == sorted(CASES)
    assert ref.read_case(repo, "CP-ZZZZZZZZ") == {}
    assert ref.shard_ref("CP-7K2M9QX4") == "refs/cmgit/keyring/7K"
    paths = [entry.path for entry in repo.ls_tree("refs/cmgit/keyring/3B")]
    assert paths == ["CP-3B4C5D6E/recovery.rc-1.rc-2.age", "CP-3B4C5D6E/staff.age"]
    for commit in commits.values():
        assert repo.objects.parents(commit) == []
        message = repo.objects.read(commit)[1].split(b"\n\n", 1)[1]
        assert message == (
            b"keyring\n\nCmgit-Keyring: 1\nCmgit-Actor: pm-001\nCmgit-Role: programme_manager\n"
        )
    assert ref.push_refspecs(repo) == [
        f"+{commits['3B']}:refs/cmgit/keyring/3B",
        f"+{commits['7K']}:refs/cmgit/keyring/7K",
    ]
    assert connected(repo.root)


def test_replacing_one_case_destroys_its_old_objects_only(repo: Git) -> None:
    first = ref.update(repo, {c: wrapped(c, "1") for c in CASES}, AUTHOR)
    old_blobs = {case_id: blob_ids(repo, case_id) for case_id in CASES}
    old_case_tree = repo.path_entry(first["7K"], CASES[0])
    assert old_case_tree is not None
    newer = wrapped(CASES[0], "2")
    second = ref.update(repo, {CASES[0]: {"staff.age": newer["staff.age"]}}, AUTHOR)

    assert list(second) == ["7K"]
    assert ref.heads(repo) == {"3B": first["3B"], "7K": second["7K"]}
    assert repo.objects.parents(second["7K"]) == []
    assert ref.read_case(repo, CASES[0]) == {"staff.age": newer["staff.age"]}
    for oid in [*old_blobs[CASES[0]], old_case_tree[1], first["7K"]]:
        assert not has_object(repo.root, oid)
    for case_id in CASES[1:]:
        assert all(has_object(repo.root, oid) for oid in old_blobs[case_id])
        assert blob_ids(repo, case_id) == old_blobs[case_id]
    assert connected(repo.root)


def test_removing_a_case_removes_its_folder_and_objects(repo: Git) -> None:
    ref.update(repo, {c: wrapped(c, "1") for c in CASES}, AUTHOR)
    gone = blob_ids(repo, CASES[2])
    emptied = ref.update(repo, {CASES[2]: None}, AUTHOR)
    assert ref.read_case(repo, CASES[2]) == {}
    assert CASES[2] not in ref.case_ids(repo)
    # The shard stays, empty, so that a push carries the removal to the central.
    assert repo.objects.commit_tree(emptied["3B"]) == ref.EMPTY_TREE
    assert not any(has_object(repo.root, oid) for oid in gone)
    assert sorted(ref.case_ids(repo)) == sorted(CASES[:2])
    assert connected(repo.root)


@pytest.mark.parametrize("racing_at", [1, 2])
def test_a_keyring_that_moved_is_not_overwritten(repo: Git, racing_at: int) -> None:
    before = ref.update(repo, {c: wrapped(c, "1") for c in CASES}, AUTHOR)
    meanwhile: list[dict[str, str]] = []
    attempted: list[bytes] = []

    def racing_sign(payload: bytes) -> str:
        # Another writer moves shard 7K between this update's read and its swap: while
        # it builds shard 3B's commit (1), or once it built both and is about to swap (2).
        attempted.append(payload)
        if len(attempted) == racing_at:
            other = Git(repo.root)
            meanwhile.append(ref.update(other, {CASES[1]: wrapped(CASES[1], "x")}, AUTHOR))
        return "-----BEGIN SSH SIGNATURE-----\nAA==\n-----END SSH SIGNATURE-----"

    with pytest.raises(RepositoryBusy):
        changes = {CASES[0]: wrapped(CASES[0], "2"), CASES[2]: wrapped(CASES[2], "2")}
        ref.update(repo, changes, AUTHOR, sign=racing_sign)
    assert len(attempted) == racing_at  # one commit per shard, 3B then 7K
    # All or none: shard 3B, which nobody else moved, did not move either.
    assert ref.heads(repo) == {"3B": before["3B"], "7K": meanwhile[0]["7K"]}
    assert sorted(ref.case_ids(repo)) == sorted(CASES)
    assert ref.finish_prune(repo) == 0  # nothing left to finish
    # The refused update's commits were never published and are gone.
    assert reachable_count(repo) == loose_count(repo)
    assert connected(repo.root)


def test_a_keyring_fetched_alone_replaces_and_prunes(tmp_path: Path) -> None:
    central, central_root = make_central(tmp_path)
    ref.update(central, {c: wrapped(c, "1") for c in CASES}, AUTHOR)
    clone = make_clone(tmp_path, central_root)
    records_packs = other_packs(clone)
    assert records_packs  # the clone's own pack of main

    first = ref.fetch(clone, "origin")
    assert first == ref.heads(central) == ref.heads(clone)
    # One pack per group of shards (their first character): 3B and 7K.
    listed = {
        commit: name
        for name in ref.keyring_packs(clone)
        for commit in first.values()
        if commit in clone.pack_ids(name)
    }
    assert len(set(listed.values())) == 2 == len(ref.keyring_packs(clone))
    main_blobs = {e.oid for e in clone.ls_tree("main")}
    assert not any(clone.pack_ids(name) & main_blobs for name in listed.values())
    old_blobs = {case_id: blob_ids(clone, case_id) for case_id in CASES}
    assert ref.read_case(clone, CASES[1]) == ref.read_case(central, CASES[1])

    ref.update(central, {CASES[0]: wrapped(CASES[0], "2")}, AUTHOR)
    second = ref.fetch(clone, "origin")
    assert second == {"7K": ref.heads(central)["7K"]}
    assert ref.read_case(clone, CASES[0]) == ref.read_case(central, CASES[0])
    assert not any(has_object(clone.root, oid) for oid in [first["7K"], *old_blobs[CASES[0]]])
    for case_id in CASES[1:]:
        assert all(has_object(clone.root, oid) for oid in old_blobs[case_id])
    assert other_packs(clone) == records_packs
    keyring_packs = clone.pack_names() - records_packs_names(clone)
    assert sorted(ref.keyring_packs(clone)) == sorted(keyring_packs)
    # Shard 7K's group pack was replaced; shard 3B's pack was not written again.
    assert listed[first["3B"]] in keyring_packs
    assert listed[first["7K"]] not in keyring_packs
    assert len(keyring_packs) == 2
    assert ref.fetch(clone, "origin") == {}  # nothing new: nothing changes
    assert ref.heads(clone) == ref.heads(central)
    assert connected(clone.root)
    assert connected(central_root)


def test_a_second_fetch_receives_only_the_changed_shard(tmp_path: Path) -> None:
    central, central_root = make_central(tmp_path)
    cases = [f"CP-{CROCKFORD[n % 32]}{CROCKFORD[n // 32 % 32]}{n:06d}" for n in range(200)]
    ref.update(central, {c: wrapped(c, "1") for c in cases}, AUTHOR)
    shards = ref.heads(central)
    assert len(shards) == 200  # one case a shard at this size
    clone = make_clone(tmp_path, central_root)
    ref.fetch(clone, "origin")
    assert sorted(ref.case_ids(clone)) == sorted(cases)

    # Each keyring pack holds the shards of one group (their first character).
    groups = {ref.shard_of(c)[0] for c in cases}
    assert len(ref.keyring_packs(clone)) == len(groups)
    for name in ref.keyring_packs(clone):
        held = clone.pack_ids(name)
        assert len({s[0] for s, commit in shards.items() if commit in held}) == 1

    replaced = ref.update(central, {cases[7]: wrapped(cases[7], "2")}, AUTHOR)
    git_cli(clone.root, "config", "fetch.unpackLimit", "100000")  # loose: to be counted
    assert loose_objects(clone) == set()
    assert ref.fetch(clone, "origin") == replaced
    (commit,) = replaced.values()
    received = loose_objects(clone)
    assert received == set(reachable(central, commit))  # that shard's objects, no more
    assert len(ref.keyring_packs(clone)) == len(groups)
    assert len(received) < len(set(reachable(central, "--glob=refs/cmgit/keyring/*"))) / 50
    assert ref.read_case(clone, cases[7]) == ref.read_case(central, cases[7])
    assert connected(clone.root)


def test_a_remote_without_some_shards_drops_them_only_when_asked(tmp_path: Path) -> None:
    _, central_root = make_central(tmp_path)
    clone = make_clone(tmp_path, central_root)
    local = ref.update(clone, {CASES[0]: wrapped(CASES[0], "1")}, AUTHOR)
    gone = blob_ids(clone, CASES[0])
    assert ref.fetch(clone, "origin") == {}
    assert ref.heads(clone) == local
    assert ref.fetch(clone, "origin", drop_missing=True) == {"7K": None}
    assert ref.heads(clone) == {}
    assert not any(has_object(clone.root, oid) for oid in [*local.values(), *gone])
    assert connected(clone.root)


def test_a_pushed_keyring_reaches_the_central_shard_by_shard(tmp_path: Path) -> None:
    central, central_root = make_central(tmp_path)
    clone = make_clone(tmp_path, central_root)
    ref.update(clone, {c: wrapped(c, "1") for c in CASES}, AUTHOR)
    assert git_cli(clone.root, "push", "-q", "origin", *ref.push_refspecs(clone)).returncode == 0
    assert ref.heads(central) == ref.heads(clone)
    assert ref.read_case(central, CASES[2]) == ref.read_case(clone, CASES[2])


def test_repositories_cmgit_writes_a_keyring_in_keep_git_gc_away(tmp_path: Path) -> None:
    central, central_root = make_central(tmp_path)
    clone = make_clone(tmp_path, central_root)
    git_cli(clone.root, "config", "gc.auto", "500")  # a choice of the repository's: kept
    ref.update(central, {CASES[0]: wrapped(CASES[0], "1")}, AUTHOR)
    ref.fetch(clone, "origin")

    def setting(git: Git, key: str) -> str:
        return git_cli(git.root, "config", "--local", "--get", key).stdout.decode().strip()

    assert (setting(central, "gc.auto"), setting(central, "maintenance.auto")) == ("0", "false")
    assert (setting(clone, "gc.auto"), setting(clone, "maintenance.auto")) == ("500", "false")


def test_prune_rewrites_a_keyring_pack_and_nothing_else(repo: Git) -> None:
    ref.update(repo, {c: wrapped(c, "1") for c in CASES}, AUTHOR)
    # Pack the keyring on its own, as a fetch would bring it, and pack main apart.
    name = repo.write_pack(reachable(repo, "--glob=refs/cmgit/keyring/*"))
    (repo.root / ".git" / "cmgit").mkdir()
    (repo.root / ".git" / "cmgit" / "keyring-packs").write_text(f"{name}\n")
    repo.write_pack(reachable(repo, "main"))
    git_cli(repo.root, "prune-packed")  # no loose copies left
    records_packs = other_packs(repo)
    old_blobs = blob_ids(repo, CASES[0])

    ref.update(repo, {CASES[0]: None}, AUTHOR)
    assert not any(has_object(repo.root, oid) for oid in old_blobs)
    assert other_packs(repo) == records_packs
    (rewritten,) = ref.keyring_packs(repo)
    assert rewritten != name
    assert not (repo.objects.folder / "pack" / f"{name}.pack").exists()
    assert connected(repo.root)


def test_the_commit_graph_never_holds_a_keyring_commit(repo: Git) -> None:
    ref.update(repo, {CASES[0]: wrapped(CASES[0], "1")}, AUTHOR)
    repo.refresh_commit_graph()
    assert repo.has_commit_graph()
    ref.update(repo, {CASES[0]: wrapped(CASES[0], "2")}, AUTHOR)
    # git checks its commit-graph against the objects: a pruned commit in it is damage.
    assert repo.fsck() == []
    assert git_cli(repo.root, "commit-graph", "verify").returncode == 0


def test_a_command_killed_before_it_pruned_leaves_the_pruning_to_the_next(repo: Git) -> None:
    first = ref.update(repo, {c: wrapped(c, "1") for c in CASES}, AUTHOR)
    old_blobs = [*blob_ids(repo, CASES[0]), *blob_ids(repo, CASES[2])]
    child = (
        "import sys; from pathlib import Path; from cmgit.history import Git, actor_author;"
        "from cmgit.keyring import ref;"
        "ref.update(Git(Path(sys.argv[1])), dict.fromkeys(sys.argv[2:]), actor_author('pm-001'))"
    )
    env = {**os.environ, "CMGIT_CRASH_AT": "keyring-moved"}
    killed = subprocess.run(
        [sys.executable, "-c", child, str(repo.root), CASES[0], CASES[2]], env=env, check=False
    )
    assert killed.returncode < 0  # killed after the refs moved, before it pruned
    assert ref.heads(repo).keys() == first.keys()
    assert not set(ref.heads(repo).values()) & set(first.values())
    assert all(has_object(repo.root, oid) for oid in [*first.values(), *old_blobs])

    assert ref.finish_prune(repo) > 0
    assert not any(has_object(repo.root, oid) for oid in [*first.values(), *old_blobs])
    assert ref.case_ids(repo) == [CASES[1]]
    assert ref.finish_prune(repo) == 0
    assert connected(repo.root)


def test_only_case_ids_and_key_file_names_reach_the_tree(repo: Git) -> None:
    with pytest.raises(BadCaseId):
        ref.update(repo, {"../CP-7K2M9QX4": wrapped(CASES[0], "1")}, AUTHOR)
    for name in ("../staff.age", "staff", "a/b.age", ".age"):
        with pytest.raises(ValueError):
            ref.update(repo, {CASES[0]: {name: b"x"}}, AUTHOR)
    assert ref.heads(repo) == {}


def test_a_shard_that_is_not_a_commit_is_refused_and_put_back(tmp_path: Path) -> None:
    central, central_root = make_central(tmp_path)
    ref.update(central, {c: wrapped(c, "1") for c in CASES}, AUTHOR)
    clone = make_clone(tmp_path, central_root)
    before = ref.fetch(clone, "origin")
    blob = git_cli(central_root, "rev-parse", "main:README").stdout.decode().strip()
    for shard in ("7K", "ZZ"):
        assert (
            git_cli(central_root, "update-ref", f"refs/cmgit/keyring/{shard}", blob).returncode == 0
        )
    with pytest.raises(IntegrityError):
        ref.fetch(clone, "origin")
    assert ref.heads(clone) == before
    assert ref.read_case(clone, CASES[0]) != {}
