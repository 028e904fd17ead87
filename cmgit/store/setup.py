"""Setting up: a new case repository from the template, an auditor's clone of a central
one, identity files and keys, and the signer that signs a person's commits.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import crypto, entries, ids, signing, yamlio
from ..config import SCHEMAS_DIR, SETTINGS_FILE, STAFF_FILE
from ..errors import (
    AccessError,
    CmgitError,
    GitFailed,
    NoIdentity,
    RepositoryError,
    TooLarge,
    UsageError,
)
from ..history import Author, Git, actor_author, generated_message
from ..registry import PROGRAMME_MANAGER, Registry, Staff, settings_defaults
from ..schema import SETTINGS, STAFF, SchemaSet
from ..template import template_root

DEFAULT_CRITERIA = [
    "unaccompanied_or_separated",
    "abuse_neglect_or_exploitation",
    "trafficked_or_at_risk",
    "child_labour",
    "associated_with_armed_groups",
    "child_marriage",
    "in_conflict_with_the_law",
    "other_protection_risk",
]
# What `cmgit init` copies from the template into a new case repository.
TEMPLATE_ITEMS = ("schemas", "site", "mkdocs.yml", "providers.yaml")


def copy_template(source: Path, target: Path) -> Path:
    """The items of the case-repository template in ``source`` copied to ``target``:
    what `init` starts a repository with (and a test or benchmark a template of its own)."""
    for item in TEMPLATE_ITEMS:
        src = source / item
        if src.is_dir():
            shutil.copytree(src, target / item)
        elif src.is_file():
            shutil.copy2(src, target / item)
    return target


def staff_author(actor: Staff) -> Author:
    return actor_author(actor.id)


@dataclass(frozen=True)
class NewRepository:
    root: Path
    signed: bool  # the settings require signed commits
    signing_key: str | None  # the first programme manager's public signing key
    made_key: Path | None  # the private key init made for them, if it did
    recovery: int = 0  # recovery recipients set at the start


def init_repository(
    target: Path,
    *,
    admin: str,
    recipient: str,
    team: str,
    signing_key: str | None,
    prefix: str,
    programme: str,
    signing_key_path: Path | None = None,
    unsigned: bool = False,
    key_beside: Path | None = None,
    recovery: Sequence[str] = (),
) -> NewRepository:
    """Create a case repository from the template; the first programme manager is
    registered in its first commit, the trust root audit starts from.

    It requires signed commits unless ``unsigned``: the first commit is signed with
    ``signing_key_path``, or with a key made beside the identity file ``key_beside``.
    """
    ids.check_staff_id(admin)
    ids.check_team_id(team)
    ids.check_prefix(prefix)
    recipient = crypto.check_recipient(recipient)
    recovery = list(dict.fromkeys(crypto.check_recipient(r) for r in recovery))
    if signing_key:
        signing_key = signing.check_public_key(signing_key)
    if target.exists() and any(target.iterdir()):
        raise UsageError("target folder is not empty", hint="choose a new or empty folder")
    source = template_root()
    made_key = None
    if signing_key_path is None and not unsigned:
        made_key, signing_key = _first_signing_key(signing_key, key_beside)
        signing_key_path = made_key
    elif signing_key_path is not None and signing_key is None:
        key = signing.load_private_key(signing_key_path)
        signing_key = signing.public_key_text(key.public_key())
    created = not target.exists()
    try:
        git = Git(target)
        git.init()
        copy_template(source, target)
        (target / ids.RECORDS_DIR).mkdir(exist_ok=True)
        schemas = SchemaSet.load(target / SCHEMAS_DIR)
        settings = settings_defaults(schemas.schemas[SETTINGS])
        settings.update(
            programme_name=programme,
            case_id_prefix=prefix,
            vulnerability_criteria=list(DEFAULT_CRITERIA),
            require_signed_commits=not unsigned,
            recovery_recipients=recovery,
        )
        schemas.validate(settings, SETTINGS, what="settings")
        admin_member = Staff(admin, PROGRAMME_MANAGER, team, recipient, signing_key, True)
        registry = Registry([admin_member])
        schemas.validate(registry.to_doc(), STAFF, what="staff registry")
        files: dict[str, bytes | None] = {
            SETTINGS_FILE: yamlio.dump(settings).encode("utf-8"),
            STAFF_FILE: yamlio.dump(registry.to_doc()).encode("utf-8"),
            f"{ids.RECORDS_DIR}/.gitkeep": b"",
        }
        for path in sorted(p for p in target.rglob("*") if p.is_file() and ".git" not in p.parts):
            rel = path.relative_to(target).as_posix()
            files.setdefault(rel, path.read_bytes())
        message = generated_message(
            "init: case repository", [("Cmgit-Action", "init"), ("Cmgit-Actor", admin)]
        )
        git.commit(
            files,
            message,
            staff_author(admin_member),
            None,
            sign=make_signer(signing_key_path, admin_member, not unsigned),
        )
        git.refresh_commit_graph()  # kept up from the first commit: see Git.commit
    except BaseException:
        if created:
            shutil.rmtree(target, ignore_errors=True)
        if made_key is not None:
            made_key.unlink(missing_ok=True)
        raise
    return NewRepository(target, not unsigned, signing_key, made_key, len(recovery))


# An auditor's work tree: every file but the sealed entries, which the clone does not hold.
AUDITOR_SPARSE = ("/*", f"!/{entries.SEALED_DIR}/")


def clone_auditor(url: str, directory: Path, branch: str = "main") -> Path:
    """An auditor's clone of the central repository at ``url``: the programme's one
    branch, with every commit, tree and open file, and none of the sealed entries (every
    entry is larger than the blob filter, every open file smaller); never the keyring,
    whose ref a single-branch clone does not fetch, now or later. The work tree leaves
    sealed/ out, and nothing fetches what the clone lacks: `cmgit audit` checks what it
    holds and counts the entries it could not check."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise UsageError(f"{directory} exists and is not an empty folder", hint="name a new folder")
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        Git(directory.parent).run(
            "clone",
            "--quiet",
            "--no-checkout",
            f"--filter=blob:limit={entries.AUDITOR_BLOB_LIMIT}",
            "--single-branch",
            "--no-tags",
            "--branch",
            branch,
            "--",
            url,
            str(directory),
        )
    except GitFailed:
        raise RepositoryError(
            "the auditor's clone failed",
            hint="check the address, your access and the branch; the central repository must "
            "allow filters (cmgit hooks install --server sets uploadpack.allowFilter)",
        ) from None
    _fetch_all_but_entries(Git(directory))
    clone = Git(directory, offline=True)
    clone.run("sparse-checkout", "set", "--no-cone", *AUDITOR_SPARSE)
    clone.run("checkout", "--quiet", branch)
    return directory


def _fetch_all_but_entries(clone: Git) -> None:
    """Fetch, by object id, the files of the history the blob filter left out that are
    not sealed entries: the configuration audit judges each commit by (schemas and the
    staff registry are larger than the filter), and the records written before the
    programme moved to sealed entries. A server lets objects be fetched by id with
    protocol version 2, or with uploadpack.allowReachableSHA1InWant (which `cmgit hooks
    install --server` sets)."""
    missing = clone.missing_objects("HEAD")
    wanted = {
        oid
        for oid, path in clone.blobs_written("HEAD")
        if oid in missing and not path.startswith(entries.SEALED_DIR + "/")
    }
    if not wanted:
        return
    try:
        clone.run(
            "-c",
            "fetch.negotiationAlgorithm=noop",
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--recurse-submodules=no",
            "--filter=blob:none",
            "--stdin",
            "origin",
            input="".join(f"{oid}\n" for oid in sorted(wanted)).encode("ascii"),
        )
    except GitFailed:
        raise RepositoryError(
            "the auditor's clone could not fetch the configuration it audits by",
            hint="the central repository must let objects be fetched by id: a coordinator runs "
            "cmgit hooks install --server there again",
        ) from None


def _first_signing_key(public: str | None, identity: Path | None) -> tuple[Path, str]:
    """A new signing key beside the identity file, for the first programme manager who
    has none; refused where that would not be the key they named or has no place."""
    if public:
        raise NoIdentity(
            "init signs the first commit with the key given in --signing-key",
            hint="set CMGIT_SIGNING_KEY to its private key file",
        )
    if identity is None:
        raise NoIdentity(
            "a new case repository requires signed commits, and no signing key was given",
            hint="set CMGIT_SIGNING_KEY, or CMGIT_IDENTITY so that init makes a key beside "
            "it; or choose --unsigned",
        )
    path = identity.with_name(f"{identity.stem}-signing")  # identity.txt: identity-signing
    try:
        return path, signing.generate_key(path)
    except FileExistsError:
        raise NoIdentity(
            f"a signing key already exists beside the identity file: {path}",
            hint="set CMGIT_SIGNING_KEY to it to sign with it",
        ) from None
    except OSError:
        raise NoIdentity(
            f"cannot write a signing key beside the identity file: {path}",
            hint="set CMGIT_SIGNING_KEY to a key of your own (ssh-keygen -t ed25519)",
        ) from None


def make_signer(path: Path | None, actor: Staff, required: bool) -> Callable[[bytes], str] | None:
    """The actor's signer where the repository requires signed commits, None where it
    does not: a commit carries a signature exactly when one is required (SPEC section 9),
    so an unsigned programme's history never looks proven in part."""
    if not required:
        return None
    if path is None:
        if required:
            raise NoIdentity(
                "this repository requires signed commits",
                hint="set CMGIT_SIGNING_KEY to your SSH signing key (ssh-keygen -t ed25519)",
            )
        return None
    key = signing.load_private_key(path)
    if signing.public_key_text(key.public_key()) != actor.signing_key:
        raise AccessError(
            f"your signing key is not the one registered for {actor.id}",
            hint="a programme manager registers it: cmgit staff update ID --signing-key ...",
        )
    return lambda data: signing.sign(data, key)


def read_limited(path: str | os.PathLike[str], limit: int, what: str) -> bytes:
    """The bytes of a file, refused (TooLarge) by its size before they are read."""
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size > limit:
            raise TooLarge(f"{what} is larger than cmgit accepts")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"{what} is larger than cmgit accepts")
    return data


def keygen(path: Path) -> str:
    private_folders(path.parent)
    secret, recipient = crypto.generate_identity()
    crypto.write_identity_file(path, secret, recipient)
    return recipient


def private_folders(folder: Path) -> None:
    """Create ``folder`` and any missing parents, each readable by its owner alone (mode
    0700): a key's folder tells what is in it. Folders that exist are left as they are."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for made in reversed(missing):
        try:
            made.mkdir(mode=0o700)
            made.chmod(0o700)  # the umask could have taken bits the owner needs
        except FileExistsError:
            continue  # made meanwhile by someone else: theirs as it is
        except OSError as exc:
            raise CmgitError(
                f"cannot create folder {made}: {exc.strerror}",
                hint="create it yourself (mkdir -m 700) or choose another path",
            ) from None


def load_identities(path: str | os.PathLike[str] | None) -> tuple[crypto.Identity, ...]:
    if not path:
        raise NoIdentity(
            "no identity given", hint="set CMGIT_IDENTITY to your identity file, or use --identity"
        )
    return crypto.load_identities(Path(path))
