"""The keyring ref in real git repositories: replaced by parentless commits, its replaced
objects deleted at once, loose or in its own packs, and the records' packs never touched."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cmgit.errors import BadCaseId, RepositoryBusy
from cmgit.history import Git, actor_author, clean_env
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
    listing = git.ls_tree(ref.KEYRING_REF, ref.case_dir(case_id))
    return [entry.oid for entry in listing]


def reachable(git: Git, rev: str) -> list[str]:
    listing = git_cli(git.root, "rev-list", "--objects", rev).stdout.decode()
    return [line.split()[0] for line in listing.splitlines()]


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


def test_cases_written_and_read_back(repo: Git) -> None:
    written = {case_id: wrapped(case_id, "1") for case_id in CASES}
    commit = ref.update(repo, written, AUTHOR, trailers=ACTOR)
    assert ref.head(repo) == commit
    for case_id in CASES:
        assert ref.read_case(repo, case_id) == written[case_id]
    assert sorted(ref.case_ids(repo)) == sorted(CASES)
    assert ref.read_case(repo, "CP-ZZZZZZZZ") == {}
    assert ref.case_dir("CP-7K2M9QX4") == "7K/CP-7K2M9QX4"
    assert repo.objects.parents(commit) == []
    message = repo.objects.read(commit)[1].split(b"\n\n", 1)[1]
    assert (
        message
        == b"keyring\n\nCmgit-Keyring: 1\nCmgit-Actor: pm-001\nCmgit-Role: programme_manager\n"
    )
    assert ref.push_refspec(repo) == f"+{commit}:refs/cmgit/keyring"
    assert connected(repo.root)


def test_replacing_one_case_destroys_its_old_objects_only(repo: Git) -> None:
    first = ref.update(repo, {c: wrapped(c, "1") for c in CASES}, AUTHOR)
    old_blobs = {case_id: blob_ids(repo, case_id) for case_id in CASES}
    old_case_tree = repo.path_entry(first, ref.case_dir(CASES[0]))
    assert old_case_tree is not None
    newer = wrapped(CASES[0], "2")
    second = ref.update(repo, {CASES[0]: {"staff.age": newer["staff.age"]}}, AUTHOR)

    assert repo.objects.parents(second) == []
    assert ref.read_case(repo, CASES[0]) == {"staff.age": newer["staff.age"]}
    for oid in [*old_blobs[CASES[0]], old_case_tree[1], first]:
        assert not has_object(repo.root, oid)
    for case_id in CASES[1:]:
        assert all(has_object(repo.root, oid) for oid in old_blobs[case_id])
        assert blob_ids(repo, case_id) == old_blobs[case_id]
    assert connected(repo.root)


def test_removing_a_case_removes_its_folder_and_objects(repo: Git) -> None:
    ref.update(repo, {c: wrapped(c, "1") for c in CASES}, AUTHOR)
    gone = blob_ids(repo, CASES[2])
    ref.update(repo, {CASES[2]: None}, AUTHOR)
    assert ref.read_case(repo, CASES[2]) == {}
    assert CASES[2] not in ref.case_ids(repo)
    assert not [e for e in repo.ls_tree(ref.KEYRING_REF) if e.path.startswith("3B/")]
    assert not any(has_object(repo.root, oid) for oid in gone)
    assert sorted(ref.case_ids(repo)) == sorted(CASES[:2])
    assert connected(repo.root)


def test_a_keyring_that_moved_is_not_overwritten(repo: Git) -> None:
    ref.update(repo, {CASES[0]: wrapped(CASES[0], "1")}, AUTHOR)
    meanwhile: list[str] = []

    def racing_sign(payload: bytes) -> str:
        # Another writer moves the keyring between this update's read and its swap.
        meanwhile.append(ref.update(Git(repo.root), {CASES[1]: wrapped(CASES[1], "x")}, AUTHOR))
        return "-----BEGIN SSH SIGNATURE-----\nAA==\n-----END SSH SIGNATURE-----"

    with pytest.raises(RepositoryBusy):
        ref.update(repo, {CASES[2]: wrapped(CASES[2], "1")}, AUTHOR, sign=racing_sign)
    assert ref.head(repo) == meanwhile[0]
    assert sorted(ref.case_ids(repo)) == sorted(CASES[:2])
    assert connected(repo.root)


def test_a_keyring_fetched_alone_replaces_and_prunes(tmp_path: Path) -> None:
    origin = make_repo(tmp_path / "origin")
    central_root = tmp_path / "central.git"
    git_cli(tmp_path, "clone", "-q", "--no-local", "--bare", str(origin.root), str(central_root))
    central = Git(central_root)
    ref.update(central, {c: wrapped(c, "1") for c in CASES}, AUTHOR)

    clone_root = tmp_path / "clone"
    git_cli(tmp_path, "clone", "-q", "--no-local", str(central_root), str(clone_root))
    clone = Git(clone_root)
    git_cli(clone_root, "config", "fetch.unpackLimit", "1")  # a pack, however small
    records_packs = other_packs(clone)
    assert records_packs  # the clone's own pack of main

    first = ref.fetch(clone, "origin")
    assert first is not None and first == ref.head(central)
    listed = ref.keyring_packs(clone)
    assert len(listed) == 1
    assert ref.head(clone) in clone.pack_ids(listed[0])
    assert not clone.pack_ids(listed[0]) & {e.oid for e in clone.ls_tree("main")}
    old_blobs = {case_id: blob_ids(clone, case_id) for case_id in CASES}
    assert ref.read_case(clone, CASES[1]) == ref.read_case(central, CASES[1])

    ref.update(central, {CASES[0]: wrapped(CASES[0], "2")}, AUTHOR)
    second = ref.fetch(clone, "origin")
    assert second == ref.head(central) != first
    assert ref.read_case(clone, CASES[0]) == ref.read_case(central, CASES[0])
    assert not any(has_object(clone_root, oid) for oid in [first, *old_blobs[CASES[0]]])
    for case_id in CASES[1:]:
        assert all(has_object(clone_root, oid) for oid in old_blobs[case_id])
    assert other_packs(clone) == records_packs
    # The first keyring pack held nothing the second lacks but what was pruned: gone.
    assert ref.keyring_packs(clone) == sorted(clone.pack_names() - {*records_packs_names(clone)})
    assert listed[0] not in clone.pack_names()
    assert ref.fetch(clone, "origin") == second  # nothing new: nothing changes
    assert connected(clone_root)
    assert connected(central_root)


def test_a_remote_without_a_keyring_leaves_the_local_one(tmp_path: Path) -> None:
    origin = make_repo(tmp_path / "origin")
    clone_root = tmp_path / "clone"
    git_cli(tmp_path, "clone", "-q", str(origin.root), str(clone_root))
    clone = Git(clone_root)
    local = ref.update(clone, {CASES[0]: wrapped(CASES[0], "1")}, AUTHOR)
    assert ref.fetch(clone, "origin") is None
    assert ref.head(clone) == local


def test_prune_rewrites_a_keyring_pack_and_nothing_else(repo: Git) -> None:
    ref.update(repo, {c: wrapped(c, "1") for c in CASES}, AUTHOR)
    # Pack the keyring on its own, as a fetch would bring it, and pack main apart.
    name = repo.write_pack(reachable(repo, ref.KEYRING_REF))
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
    first = ref.update(repo, {c: wrapped(c, "1") for c in CASES[:2]}, AUTHOR)
    old_blobs = blob_ids(repo, CASES[0])
    child = (
        "import sys; from pathlib import Path; from cmgit.history import Git, actor_author;"
        "from cmgit.keyring import ref;"
        "ref.update(Git(Path(sys.argv[1])), {sys.argv[2]: None}, actor_author('pm-001'))"
    )
    env = {**os.environ, "CMGIT_CRASH_AT": "keyring-moved"}
    killed = subprocess.run(
        [sys.executable, "-c", child, str(repo.root), CASES[0]], env=env, check=False
    )
    assert killed.returncode < 0  # killed after the ref moved, before it pruned
    assert ref.head(repo) != first
    assert all(has_object(repo.root, oid) for oid in [first, *old_blobs])

    assert ref.finish_prune(repo) > 0
    assert not any(has_object(repo.root, oid) for oid in [first, *old_blobs])
    assert ref.case_ids(repo) == [CASES[1]]
    assert ref.finish_prune(repo) == 0
    assert connected(repo.root)


def test_only_case_ids_and_key_file_names_reach_the_tree(repo: Git) -> None:
    with pytest.raises(BadCaseId):
        ref.update(repo, {"../CP-7K2M9QX4": wrapped(CASES[0], "1")}, AUTHOR)
    for name in ("../staff.age", "staff", "a/b.age", ".age"):
        with pytest.raises(ValueError):
            ref.update(repo, {CASES[0]: {name: b"x"}}, AUTHOR)
    assert ref.head(repo) is None
