"""Case keys wrapped to readers and to k of n custodians, with real age keys, and the
stock `age` tool peeling what cmgit wrapped (skipped without it unless
CMGIT_REQUIRE_AGE=1)."""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from cmgit.crypto import (
    Identity,
    generate_identity,
    inspect_binary,
    open_binary,
    parse_identity,
    seal_binary,
    write_identity_file,
)
from cmgit.errors import IntegrityError, NotARecipient, UsageError
from cmgit.keyring.wrap import (
    STAFF_FILE,
    CaseKey,
    Custodian,
    check_shape,
    key_file,
    new_case_key,
    parse_key_file,
    recover,
    recovery_name,
    recovery_subsets,
    rotate,
    unwrap,
    wrap,
)
from tests.test_age_interop import _tool

CASE = "CP-7K2M9QX4"
OTHER_CASE = "CP-7K2M9QX5"
ENTRY = b'{"cmgit_entry":1,"case_id":"CP-7K2M9QX4","version":1,"set":{"CANARY":1}}'


def _identity() -> Identity:
    secret, _ = generate_identity()
    return parse_identity(secret)


@pytest.fixture(scope="module")
def staff() -> list[Identity]:
    return [_identity(), _identity()]


@pytest.fixture(scope="module")
def keepers() -> dict[str, Identity]:
    return {name: _identity() for name in ("rc-1", "rc-2", "rc-3")}


@pytest.fixture(scope="module")
def custodians(keepers: dict[str, Identity]) -> list[Custodian]:
    return [Custodian(name, identity.recipient) for name, identity in keepers.items()]


@pytest.fixture(scope="module")
def key() -> CaseKey:
    return new_case_key(CASE)


@pytest.fixture(scope="module")
def files(key: CaseKey, staff: list[Identity], custodians: list[Custodian]) -> dict[str, bytes]:
    return wrap(key, [s.recipient for s in staff], custodians, 2)


# -- the case key ----------------------------------------------------------------------


def test_case_key_hides_its_secrets(key: CaseKey) -> None:
    assert key.secrets[0] not in repr(key)
    assert "AGE-SECRET-KEY" not in repr(key)


def test_rotation_keeps_older_generations(key: CaseKey) -> None:
    first = seal_binary(ENTRY, [key.recipient])
    rotated = rotate(key)
    assert rotated.secrets[:1] == key.secrets and len(rotated.secrets) == 2
    assert rotated.recipient != key.recipient
    second = seal_binary(ENTRY, [rotated.recipient])
    assert open_binary(first, rotated.identities()) == ENTRY
    assert open_binary(second, rotated.identities()) == ENTRY
    with pytest.raises(NotARecipient):
        open_binary(second, key.identities())


def test_key_file_round_trip(key: CaseKey) -> None:
    rotated = rotate(key)
    data = key_file(rotated)
    lines = data.decode().splitlines()
    assert lines[0] == f"# cmgit case key {CASE}"
    assert lines[1::2] == ["# generation 1", "# generation 2"]
    assert lines[2::2] == list(rotated.secrets)
    assert parse_key_file(data, CASE) == rotated


def test_key_file_of_another_case_is_refused(key: CaseKey) -> None:
    with pytest.raises(IntegrityError, match="another case"):
        parse_key_file(key_file(key), OTHER_CASE)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: d.rstrip(b"\n"),
        lambda d: d.replace(b"# generation 1", b"# generation 2"),
        lambda d: d.replace(b"\n", b"\r\n"),
        lambda d: d + b"# generation 2\n",
        lambda d: d + d.split(b"\n", 1)[1],  # the same secret twice
        lambda d: d.lower(),
        lambda d: d[:-5] + b"AAAA\n",
        lambda d: b"# a comment\n" + d,
        lambda d: d.split(b"\n", 1)[0] + b"\n",
        lambda d: b"",
    ],
    ids=[
        "no-final-newline",
        "generation-number",
        "crlf",
        "dangling-generation",
        "repeated-secret",
        "lower-case",
        "bad-checksum",
        "first-line",
        "no-generation",
        "empty",
    ],
)
def test_key_file_is_strict(key: CaseKey, mangle: Callable[[bytes], bytes]) -> None:
    data = mangle(key_file(key))
    with pytest.raises(IntegrityError) as info:
        parse_key_file(data, CASE)
    assert "AGE-SECRET-KEY" not in str(info.value).upper()


# -- custodians and subsets ------------------------------------------------------------


def test_subsets_and_names(custodians: list[Custodian]) -> None:
    subsets = recovery_subsets(custodians, 2)
    assert [recovery_name(s) for s in subsets] == [
        "recovery.rc-1.rc-2.age",
        "recovery.rc-1.rc-3.age",
        "recovery.rc-2.rc-3.age",
    ]
    assert subsets == list(itertools.combinations(custodians, 2))
    assert recovery_subsets([], 2) == []


@pytest.mark.parametrize("k", [0, 4, -1])
def test_threshold_must_be_one_to_n(custodians: list[Custodian], k: int) -> None:
    with pytest.raises(UsageError):
        recovery_subsets(custodians, k)


def test_custodian_ids_and_recipients_are_checked(staff: list[Identity]) -> None:
    for bad in ("", "RC-1", "rc.1", "-rc", "r" * 33):
        with pytest.raises(UsageError):
            Custodian(bad, staff[0].recipient)
    with pytest.raises(UsageError):
        Custodian("rc-1", "age1nothing")
    with pytest.raises(UsageError):
        recovery_subsets([Custodian("rc-1", staff[0].recipient)] * 2, 1)


# -- wrap, unwrap, recover -------------------------------------------------------------


def test_wrap_writes_staff_and_one_file_per_subset(files: dict[str, bytes]) -> None:
    assert sorted(files) == [
        "recovery.rc-1.rc-2.age",
        "recovery.rc-1.rc-3.age",
        "recovery.rc-2.rc-3.age",
        STAFF_FILE,
    ]
    assert inspect_binary(files[STAFF_FILE]).stanza_count == 2


def test_each_staff_recipient_unwraps(
    files: dict[str, bytes], key: CaseKey, staff: list[Identity]
) -> None:
    for identity in staff:
        assert unwrap(files, CASE, [identity]) == key


def test_a_non_recipient_does_not_unwrap(
    files: dict[str, bytes], keepers: dict[str, Identity]
) -> None:
    with pytest.raises(NotARecipient, match=CASE):
        unwrap(files, CASE, [_identity(), keepers["rc-1"]])


def test_unwrap_refuses_the_key_of_another_case(
    files: dict[str, bytes], staff: list[Identity]
) -> None:
    with pytest.raises(IntegrityError, match="another case"):
        unwrap(files, OTHER_CASE, [staff[0]])


def test_every_pair_of_custodians_recovers(
    files: dict[str, bytes],
    key: CaseKey,
    keepers: dict[str, Identity],
    custodians: list[Custodian],
) -> None:
    for pair in itertools.combinations(keepers.values(), 2):
        # Order and strangers among the identities do not matter.
        present = [_identity(), *reversed(pair)]
        recovered = recover(files, CASE, custodians, 2, present)
        assert recovered.secrets == key.secrets


def test_a_single_custodian_cannot_recover(
    files: dict[str, bytes],
    keepers: dict[str, Identity],
    custodians: list[Custodian],
    staff: list[Identity],
) -> None:
    for identity in keepers.values():
        with pytest.raises(NotARecipient, match="2 custodians; 1 given"):
            recover(files, CASE, custodians, 2, [identity, *staff])


def test_one_layer_alone_opens_nothing_but_the_next_layer(
    files: dict[str, bytes], keepers: dict[str, Identity]
) -> None:
    outer = files["recovery.rc-1.rc-2.age"]
    with pytest.raises(NotARecipient):
        open_binary(outer, [keepers["rc-2"]])
    inner = open_binary(outer, [keepers["rc-1"]])
    assert inspect_binary(inner).stanza_count == 1
    assert b"AGE-SECRET-KEY" not in inner
    with pytest.raises(NotARecipient):
        open_binary(inner, [keepers["rc-1"]])


def test_no_custodians_no_recovery(key: CaseKey, staff: list[Identity]) -> None:
    files = wrap(key, [staff[0].recipient], [], 2)
    assert list(files) == [STAFF_FILE]
    with pytest.raises(NotARecipient):
        recover(files, CASE, [], 2, staff)


# -- check_shape -----------------------------------------------------------------------


def test_check_shape_accepts_what_wrap_writes(
    files: dict[str, bytes], custodians: list[Custodian]
) -> None:
    assert check_shape(files, 2, custodians, 2) == []


def test_check_shape_finds_a_missing_and_an_extra_file(
    files: dict[str, bytes], custodians: list[Custodian]
) -> None:
    changed = dict(files)
    del changed["recovery.rc-1.rc-3.age"]
    changed["recovery.rc-1.age"] = files["recovery.rc-1.rc-2.age"]
    problems = check_shape(changed, 2, custodians, 2)
    assert len(problems) == 2
    assert any("recovery.rc-1.rc-3.age" in p and "missing" in p for p in problems)
    assert any("recovery.rc-1.age" in p and "unexpected" in p for p in problems)


def test_check_shape_finds_wrong_stanza_counts(
    files: dict[str, bytes], custodians: list[Custodian], staff: list[Identity]
) -> None:
    changed = dict(files)
    changed["recovery.rc-2.rc-3.age"] = seal_binary(b"x", [c.recipient for c in custodians])
    problems = check_shape(changed, 3, custodians, 2)
    assert len(problems) == 2
    assert any(p.startswith(STAFF_FILE) and "2" in p for p in problems)
    assert any(p.startswith("recovery.rc-2.rc-3.age") and "3" in p for p in problems)


def test_check_shape_finds_a_file_that_is_no_binary_age_file(
    files: dict[str, bytes], custodians: list[Custodian]
) -> None:
    changed = {**files, STAFF_FILE: b"-----BEGIN AGE ENCRYPTED FILE-----\n"}
    assert check_shape(changed, 2, custodians, 2) == [
        f"{STAFF_FILE} is not a binary age file of X25519 recipients"
    ]


# -- stock age -------------------------------------------------------------------------


def _age(tmp_path: Path, *args: str, data: bytes) -> bytes:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "LC_ALL": "C"}
    result = subprocess.run(
        [_tool("age"), *args], input=data, capture_output=True, env=env, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


def _identity_file(tmp_path: Path, name: str) -> tuple[Path, str]:
    secret, recipient = generate_identity()
    path = tmp_path / name
    write_identity_file(path, secret, recipient)
    return path, recipient


def test_stock_age_unwraps_and_opens_an_entry(tmp_path: Path, key: CaseKey) -> None:
    me, recipient = _identity_file(tmp_path, "me.txt")
    rotated = rotate(key)
    files = wrap(rotated, [recipient], [], 1)
    case_key = tmp_path / "case-key.txt"
    case_key.write_bytes(_age(tmp_path, "-d", "-i", str(me), data=files[STAFF_FILE]))
    old_entry = seal_binary(ENTRY, [key.recipient])
    new_entry = seal_binary(ENTRY, [rotated.recipient])
    for entry in (old_entry, new_entry):
        assert _age(tmp_path, "-d", "-i", str(case_key), data=entry) == ENTRY


def test_two_custodians_peel_a_recovery_file_with_stock_age(
    tmp_path: Path, key: CaseKey, staff: list[Identity]
) -> None:
    paths = {}
    custodians = []
    for name in ("rc-1", "rc-2", "rc-3"):
        paths[name], recipient = _identity_file(tmp_path, f"{name}.txt")
        custodians.append(Custodian(name, recipient))
    files = wrap(key, [staff[0].recipient], custodians, 2)
    layer = files["recovery.rc-2.rc-3.age"]
    for name in ("rc-2", "rc-3"):
        layer = _age(tmp_path, "-d", "-i", str(paths[name]), data=layer)
    assert parse_key_file(layer, CASE) == key
