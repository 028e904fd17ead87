"""SSH commit signatures: made in-process, checked against the registered key, and
accepted by git itself."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cmgit import signing
from cmgit.history import Git

from .conftest import Programme


def ssh_key(folder: Path, name: str) -> tuple[Path, str]:
    path = folder / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True
    )
    return path, (folder / f"{name}.pub").read_text().strip()


def require_signatures(programme: Programme, folder: Path) -> tuple[Path, Path]:
    """Register SSH keys for pm-001 and cw-north-1 and require signed commits; returns
    the two private keys (programme manager's, caseworker's)."""
    pm_key, pm_pub = ssh_key(folder, "pm")
    cw_key, cw_pub = ssh_key(folder, "cw")
    pm = {"CMGIT_SIGNING_KEY": str(pm_key)}
    for staff_id, public, env in (("pm-001", pm_pub, None), ("cw-north-1", cw_pub, pm)):
        assert (
            programme.cli(
                "staff", "update", staff_id, "--signing-key", public, as_="pm-001", env=env
            ).exit_code
            == 0
        )
    assert (
        programme.cli(
            "settings", "set", "require_signed_commits", "true", as_="pm-001", env=pm
        ).exit_code
        == 0
    )
    return pm_key, cw_key


def test_sign_and_verify_round_trip(tmp_path: Path) -> None:
    path, public = ssh_key(tmp_path, "k")
    key = signing.load_private_key(path)
    armored = signing.sign(b"payload", key)
    assert signing.verify(b"payload", armored) == signing.check_public_key(public)
    with pytest.raises(signing.BadSignature):
        signing.verify(b"other payload", armored)
    tampered = armored.replace(armored.splitlines()[2][:4], "AAAA", 1)
    with pytest.raises(signing.BadSignature):
        signing.verify(b"payload", tampered)


def test_the_key_file_reader_agrees_with_the_library(tmp_path: Path) -> None:
    """A signing command reads an unencrypted Ed25519 key file itself (the library's loader
    costs a tenth of the command to import): for keys made by ssh-keygen and by cmgit, and
    for every byte of one changed, it reads the library's key or leaves the file to it."""
    import base64

    from cryptography.hazmat.primitives import serialization

    def library(data: bytes) -> bytes | None:
        try:
            key = serialization.load_ssh_private_key(data, password=None)
        except (ValueError, TypeError):
            return None
        return key.private_bytes_raw() if hasattr(key, "private_bytes_raw") else None

    made = tmp_path / "cmgit-key"
    signing.generate_key(made)
    for path in (ssh_key(tmp_path, "k")[0], made):
        data = path.read_bytes()
        assert signing._ed25519_seed(data) == library(data) is not None
        assert signing.load_private_key(path).private_bytes_raw() == library(data)
        lines = data.strip().splitlines()
        body = base64.b64decode(b"".join(lines[1:-1]))
        for at in range(len(body)):
            changed = bytearray(body)
            changed[at] ^= 0x41
            text = base64.b64encode(bytes(changed))
            mutated = b"\n".join([lines[0], text, lines[-1]]) + b"\n"
            seed = signing._ed25519_seed(mutated)
            assert seed is None or seed == library(mutated), at
    locked = tmp_path / "locked"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(locked)], check=True
    )
    assert signing._ed25519_seed(locked.read_bytes()) is None
    from cmgit.errors import NoIdentity

    with pytest.raises(NoIdentity, match="passphrase"):
        signing.load_private_key(locked)


def test_signing_key_file_must_be_private(tmp_path: Path) -> None:
    path, _ = ssh_key(tmp_path, "k")
    os.chmod(path, 0o644)
    from cmgit.errors import NoIdentity

    with pytest.raises(NoIdentity, match="readable by others"):
        signing.load_private_key(path)


def test_required_signatures_with_the_registered_key(programme: Programme, tmp_path: Path) -> None:
    worker_key, worker_pub = ssh_key(tmp_path, "cw")
    pm_key, pm_pub = ssh_key(tmp_path, "pm")
    other_key, _ = ssh_key(tmp_path, "other")
    assert (
        programme.cli("staff", "update", "pm-001", "--signing-key", pm_pub, as_="pm-001").exit_code
        == 0
    )
    assert (
        programme.cli(
            "staff",
            "update",
            "cw-north-1",
            "--signing-key",
            worker_pub,
            as_="pm-001",
            env={"CMGIT_SIGNING_KEY": str(pm_key)},
        ).exit_code
        == 0
    )
    result = programme.cli(
        "settings",
        "set",
        "require_signed_commits",
        "true",
        as_="pm-001",
        env={"CMGIT_SIGNING_KEY": str(pm_key)},
    )
    assert result.exit_code == 0, result.output

    before = programme.state()
    unsigned = programme.cli("new", "--from", programme.form_file("identification"))
    assert unsigned.exit_code == 5 and "requires signed commits" in unsigned.stderr
    wrong = programme.cli(
        "new",
        "--from",
        programme.form_file("identification"),
        env={"CMGIT_SIGNING_KEY": str(other_key)},
    )
    assert wrong.exit_code == 5 and "not the one registered" in wrong.stderr
    assert programme.state() == before

    ok = programme.cli(
        "new",
        "--from",
        programme.form_file("identification"),
        env={"CMGIT_SIGNING_KEY": str(worker_key)},
    )
    assert ok.exit_code == 0, ok.output
    git = Git(programme.root)
    payload, armored = git.objects.signed_commit(git.head() or "")
    assert armored is not None
    assert signing.verify(payload, armored) == signing.check_public_key(worker_pub)

    # git itself accepts the signature with an allowed-signers file
    allowed = tmp_path / "allowed"
    allowed.write_text(f"cw-north-1@cmgit.invalid {worker_pub}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    check = subprocess.run(
        [
            "git",
            "-C",
            str(programme.root),
            "-c",
            "gpg.format=ssh",
            "-c",
            f"gpg.ssh.allowedSignersFile={allowed}",
            "verify-commit",
            "HEAD",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert check.returncode == 0, check.stderr
