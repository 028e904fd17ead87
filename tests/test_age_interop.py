"""Interoperability with the reference `age` command line tool, in both directions.

SPEC section 2: a sealed block is a standard age message that anyone with the right
identity can open with `age`, without cmgit. Skipped when `age` is not installed,
unless CMGIT_REQUIRE_AGE=1 (CI installs age and sets it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from cmgit.crypto import (
    Identity,
    generate_identity,
    inspect,
    load_identities,
    open_sealed,
    parse_identity,
    seal,
    write_identity_file,
)

CANARY = b"CANARY-NAME-7f3a \x00\xff binary too\n"

Runner = Callable[..., bytes]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"the `{name}` command is not on PATH"
        if os.environ.get("CMGIT_REQUIRE_AGE") == "1":
            pytest.fail(f"{message}, and CMGIT_REQUIRE_AGE=1 requires it: install age")
        pytest.skip(message)
    return path


@pytest.fixture
def run(tmp_path: Path) -> Runner:
    """Run an age tool hermetically: list argv, a scratch HOME, no shell."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "LC_ALL": "C"}

    def runner(argv: list[str], data: bytes = b"") -> bytes:
        result = subprocess.run(
            [_tool(argv[0]), *argv[1:]],
            input=data,
            capture_output=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        return result.stdout

    return runner


def _new_identity(tmp_path: Path, name: str) -> tuple[Path, Identity]:
    secret, recipient = generate_identity()
    path = tmp_path / name
    write_identity_file(path, secret, recipient)
    return path, parse_identity(secret)


@pytest.mark.parametrize("size", [0, 1, 47, 48, 65536, 65537, 200_000])
def test_sealed_block_opens_with_age(run: Runner, tmp_path: Path, size: int) -> None:
    path, identity = _new_identity(tmp_path, "key.txt")
    _, other = _new_identity(tmp_path, "other.txt")
    plaintext = (CANARY * (size // len(CANARY) + 1))[:size]
    block = seal(plaintext, [other.recipient, identity.recipient])
    assert run(["age", "-d", "-i", str(path)], block.encode()) == plaintext


def test_age_armored_message_passes_inspect_and_opens(run: Runner, tmp_path: Path) -> None:
    _, identity = _new_identity(tmp_path, "key.txt")
    block = run(["age", "-a", "-r", identity.recipient], CANARY).decode("ascii")
    header = inspect(block)
    assert header.stanza_types == ("X25519",)
    assert header.grease_stanzas == 0  # the Go implementation adds no grease
    assert open_sealed(block, [identity]) == CANARY


def test_age_message_to_two_recipients(run: Runner, tmp_path: Path) -> None:
    _, first = _new_identity(tmp_path, "first.txt")
    _, second = _new_identity(tmp_path, "second.txt")
    block = run(["age", "-a", "-r", first.recipient, "-r", second.recipient], CANARY).decode(
        "ascii"
    )
    assert inspect(block).stanza_count == 2
    assert open_sealed(block, [first]) == CANARY
    assert open_sealed(block, [second]) == CANARY


def test_age_armor_is_canonical_at_every_line_fill(run: Runner, tmp_path: Path) -> None:
    # Without grease the binary length steps by one: 48 sizes cover every fill of the
    # last armor line, including a full one.
    _, identity = _new_identity(tmp_path, "key.txt")
    for size in range(100, 148):
        block = run(["age", "-a", "-r", identity.recipient], b"x" * size).decode("ascii")
        inspect(block)


def test_age_keygen_identity_loads(run: Runner, tmp_path: Path) -> None:
    path = tmp_path / "keygen.txt"
    run(["age-keygen", "-o", str(path)])
    recipient = run(["age-keygen", "-y", str(path)]).decode().strip()
    (identity,) = load_identities(path)
    assert identity.recipient == recipient
    assert open_sealed(seal(CANARY, [recipient]), [identity]) == CANARY
