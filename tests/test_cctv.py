"""The C2SP CCTV age vectors through cmgit's age adapter (hostile-tests C1).

Each vector file is its own test. `decrypt_message` is the adapter below the record
policy: it has no stanza policy, so passphrase (scrypt) vectors run here too; the policy
that refuses scrypt in records is tested in test_crypto.py.

A second set of tests runs pyrage alone on the same vectors and asserts where it departs
from what the vectors expect: those departures are why the adapter parses armor and
header itself before handing a message to pyrage.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyrage
import pytest

from cmgit import crypto
from cmgit.crypto import (
    AgeFailure,
    ArmorFailure,
    HeaderFailure,
    HMACFailure,
    NoMatch,
    PayloadFailure,
    decrypt_message,
    parse_identity,
)

VECTORS = Path(__file__).parent / "cctv-age" / "testdata"
NAMES = sorted(p.name for p in VECTORS.iterdir() if p.is_file())

PQ_PREFIX = "AGE-SECRET-KEY-PQ-1"
PQ_REASON = "needs a hybrid ML-KEM-768+X25519 identity (AGE-SECRET-KEY-PQ-1...); pyrage has none"

FAILURES: dict[str, type[AgeFailure]] = {
    "armor failure": ArmorFailure,
    "header failure": HeaderFailure,
    "no match": NoMatch,
    "HMAC failure": HMACFailure,
    "payload failure": PayloadFailure,
}
KNOWN_KEYS = {
    "expect",
    "payload",
    "file key",
    "identity",
    "passphrase",
    "armored",
    "compressed",
    "comment",
}


@dataclass
class Vector:
    name: str
    expect: str
    payload: str | None
    body: bytes
    armored: bool
    identities: list[str] = field(default_factory=list)
    passphrases: list[str] = field(default_factory=list)

    @property
    def needs_post_quantum(self) -> bool:
        return any(i.startswith(PQ_PREFIX) for i in self.identities)


def load_vector(name: str) -> Vector:
    raw = (VECTORS / name).read_bytes()
    head, sep, body = raw.partition(b"\n\n")
    assert sep, f"{name}: no blank line after the textual header"
    fields: dict[str, str] = {}
    identities: list[str] = []
    passphrases: list[str] = []
    for line in head.decode("utf-8").split("\n"):
        key, colon, value = line.partition(": ")
        assert colon, f"{name}: malformed header line"
        if key not in KNOWN_KEYS:
            # The format says files with unknown keys are to be ignored.
            pytest.skip(f"unknown vector header key {key!r}")
        if key == "identity":
            identities.append(value)
        elif key == "passphrase":
            passphrases.append(value)
        else:
            assert key not in fields, f"{name}: repeated key {key}"
            fields[key] = value
    if fields.get("compressed") == "zlib":
        body = zlib.decompress(body)
    else:
        assert "compressed" not in fields, f"{name}: unknown compression"
    assert fields["expect"] == "success" or fields["expect"] in FAILURES, name
    return Vector(
        name=name,
        expect=fields["expect"],
        payload=fields.get("payload"),
        body=body,
        armored=fields.get("armored") == "yes",
        identities=identities,
        passphrases=passphrases,
    )


def test_vector_count() -> None:
    vectors = [load_vector(name) for name in NAMES]
    assert len(vectors) == 143
    assert Counter(v.expect for v in vectors) == {
        "success": 26,
        "header failure": 62,
        "armor failure": 22,
        "payload failure": 19,
        "no match": 13,
        "HMAC failure": 1,
    }
    assert sum(v.needs_post_quantum for v in vectors) == 19
    # 25 scrypt_* files plus armor_scrypt carry a passphrase (the provenance note's "27"
    # is one too many).
    assert sum(bool(v.passphrases) for v in vectors) == 26


# -- the adapter -----------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_vector(name: str) -> None:
    vector = load_vector(name)
    if vector.needs_post_quantum:
        pytest.skip(PQ_REASON)
    identities = [parse_identity(secret) for secret in vector.identities]

    def run() -> bytes:
        return decrypt_message(vector.body, identities, vector.passphrases, armored=vector.armored)

    if vector.expect == "success":
        assert hashlib.sha256(run()).hexdigest() == vector.payload
        return
    expected = FAILURES[vector.expect]
    with pytest.raises(AgeFailure) as info:
        run()
    assert type(info.value) is expected, f"{name}: {info.value}"
    # For "payload failure" the vector's hash covers the plaintext a streaming reader
    # releases before the bad chunk. The adapter is stricter: it returns nothing at all,
    # and the exception carries no bytes either.
    assert not [a for a in info.value.args if isinstance(a, bytes | bytearray)]
    assert not [v for v in vars(info.value).values() if isinstance(v, bytes | bytearray)]


def test_scrypt_work_factor_cap_runs_before_pyrage(monkeypatch: pytest.MonkeyPatch) -> None:
    # pyrage alone would try work factor 23 when the machine is fast enough (it scales
    # its ceiling to the machine): 8 GiB of memory and tens of seconds. The adapter caps
    # it at the reference implementation's default, without calling pyrage.
    def fail(*_args: object) -> None:
        raise AssertionError("pyrage was asked to run scrypt above the cap")

    monkeypatch.setattr(pyrage.passphrase, "decrypt", fail)
    vector = load_vector("scrypt_work_factor_23")
    with pytest.raises(HeaderFailure, match="work factor"):
        decrypt_message(vector.body, passphrases=vector.passphrases, armored=vector.armored)


def test_armor_is_detected_when_not_told() -> None:
    for name in ("armor_x25519", "x25519", "armor_whitespace_outside"):
        vector = load_vector(name)
        identities = [parse_identity(s) for s in vector.identities]
        plaintext = decrypt_message(vector.body, identities)
        assert hashlib.sha256(plaintext).hexdigest() == vector.payload


# -- pyrage alone ----------------------------------------------------------------------

# Where pyrage 1.4 on its own does not do what a vector expects. Each entry is the
# observed behaviour; the adapter tests above show the adapter gets these right.
RAW_DEVIATIONS: dict[str, str] = {
    # Whitespace lines around the armor are allowed; rage only sees armor at byte 0 and
    # parses the rest as a binary header.
    "armor_whitespace_outside": "Header is invalid",
    # Not recognised as armor at all, so reported as a bad binary header rather than as
    # bad armor.
    "armor_garbage_leading": "Header is invalid",
    "armor_lowercase": "Header is invalid",
    "armor_whitespace_begin": "Header is invalid",
    "armor_wrong_type": "Header is invalid",
    # rage accepts a stanza whose body lacks the final short line the format requires
    # (the MAC still matches, so the message decrypts).
    "stanza_missing_body": "decrypts",
    "stanza_missing_final_line": "decrypts",
}
# Not run against pyrage alone: the outcome depends on the machine (rage allows four
# more than its one-second work factor) and success costs 8 GiB of memory.
RAW_NOT_RUN = {"scrypt_work_factor_23": "scrypt work factor 23: machine-dependent, 8 GiB"}


def _raw_outcome(vector: Vector) -> str:
    """What pyrage alone does with the vector, as a vector expectation or a message."""
    keys = [pyrage.x25519.Identity.from_str(secret) for secret in vector.identities]
    try:
        if vector.passphrases and not keys:
            errors: list[str] = []
            for secret in vector.passphrases:
                try:
                    plaintext: bytes = pyrage.passphrase.decrypt(vector.body, secret)
                    break
                except pyrage.DecryptError as exc:
                    errors.append(str(exc))
            else:
                raise pyrage.DecryptError(errors[-1])
        else:
            plaintext = pyrage.decrypt(vector.body, keys)
    except pyrage.DecryptError as exc:
        message = str(exc)
        if message.startswith(("invalid armor", "DecodeError")):
            return "armor failure"
        for prefix, failure in crypto._PYRAGE_MESSAGES:
            if message.startswith(prefix) and FAILURES.get(vector.expect) is failure:
                return vector.expect
        return message
    if vector.expect == "success":
        ok = hashlib.sha256(plaintext).hexdigest() == vector.payload
        return "success" if ok else "wrong plaintext"
    return "decrypts"


@pytest.mark.parametrize("name", NAMES)
def test_pyrage_alone(name: str) -> None:
    vector = load_vector(name)
    if vector.needs_post_quantum:
        pytest.skip(PQ_REASON)
    if name in RAW_NOT_RUN:
        pytest.skip(RAW_NOT_RUN[name])
    observed = _raw_outcome(vector)
    assert observed == RAW_DEVIATIONS.get(name, vector.expect)


def test_deviation_lists_name_real_vectors() -> None:
    assert set(RAW_DEVIATIONS) <= set(NAMES)
    assert set(RAW_NOT_RUN) <= set(NAMES)
