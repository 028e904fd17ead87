"""cmgit.crypto: sealing, the inspect() policy gate, opening, identity files.

The armor and header helpers here are written independently of the module under test,
so a bug in its own encoder cannot make a test agree with it.
"""

from __future__ import annotations

import base64
import contextlib
import os
import random
import re
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pyrage
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmgit import crypto
from cmgit.crypto import (
    MAX_IDENTITY_FILE_BYTES,
    MAX_SEALED_BYTES,
    MAX_STANZAS,
    RECIPIENT_RE,
    AgeCipher,
    Cipher,
    Header,
    Identity,
    check_recipient,
    generate_identity,
    inspect,
    inspect_binary,
    load_identities,
    open_binary,
    open_sealed,
    parse_identity,
    seal,
    seal_binary,
    write_identity_file,
)
from cmgit.errors import (
    IntegrityError,
    NoIdentity,
    NotARecipient,
    TooLarge,
    UsageError,
)

CANARY = b"CANARY-NAME-7f3a born 2014-03-02 in CANARY-PLACE-91c2"
BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----"
END = "-----END AGE ENCRYPTED FILE-----"
CHUNK = 64 * 1024
TAG = 16

# The example key pair of the age specification (public test data, no secret of anyone).
SPEC_SECRET = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
SPEC_RECIPIENT = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"


# -- helpers ---------------------------------------------------------------------------


def armor(data: bytes) -> str:
    text = base64.b64encode(data).decode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return "\n".join([BEGIN, *lines, END]) + "\n"


def dearmor(armored: str) -> bytes:
    lines = armored.strip("\n").split("\n")
    assert lines[0] == BEGIN and lines[-1] == END
    return base64.b64decode("".join(lines[1:-1]))


def header_end(binary: bytes) -> int:
    """Offset just after the "--- MAC" line, where the 16-byte nonce starts."""
    mac = binary.index(b"\n--- ") + 1
    return binary.index(b"\n", mac) + 1


def split_header(binary: bytes) -> tuple[list[bytes], bytes, bytes]:
    """(stanza texts, MAC line, payload) of a binary age message."""
    end = header_end(binary)
    text = binary[:end].decode()
    version, rest = text.split("\n", 1)
    assert version == "age-encryption.org/v1"
    body, mac = rest.rsplit("--- ", 1)
    stanzas = ["-> " + s for s in body.split("-> ") if s]
    return [s.encode() for s in stanzas], ("--- " + mac).encode(), binary[end:]


def build(stanzas: list[bytes], mac: bytes, payload: bytes) -> str:
    """Re-assemble a message from parts (the MAC is left stale) and armor it canonically."""
    return armor(b"age-encryption.org/v1\n" + b"".join(stanzas) + mac + payload)


def stanza(*args: str, body: bytes = b"") -> bytes:
    text = base64.b64encode(body).decode().rstrip("=")
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    if not lines or len(lines[-1]) == 64:
        lines.append("")
    return ("-> " + " ".join(args) + "\n" + "\n".join(lines) + "\n").encode()


def x25519_stanza() -> bytes:
    return stanza(
        "X25519", base64.b64encode(os.urandom(32)).decode().rstrip("="), body=os.urandom(32)
    )


def fail_if_called(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("pyrage was called although inspect() should have refused first")


# -- fixtures --------------------------------------------------------------------------


def _identity() -> Identity:
    secret, _ = generate_identity()
    return parse_identity(secret)


@pytest.fixture(scope="module")
def alice() -> Identity:
    return _identity()


@pytest.fixture(scope="module")
def bob() -> Identity:
    return _identity()


@pytest.fixture(scope="module")
def carol() -> Identity:
    return _identity()


@pytest.fixture(scope="module")
def sealed(alice: Identity, bob: Identity) -> str:
    return seal(CANARY, [alice.recipient, bob.recipient])


@pytest.fixture(scope="module")
def scrypt_block() -> str:
    # pyrage calibrates the work factor to about a second of this machine's time, once.
    block: bytes = pyrage.passphrase.encrypt(CANARY, "correct horse", armored=True)
    return block.decode()


# -- seal and open ---------------------------------------------------------------------


def test_round_trip(alice: Identity) -> None:
    block = seal(CANARY, [alice.recipient])
    assert isinstance(block, str)
    assert block.startswith(BEGIN + "\n") and block.endswith(END + "\n")
    assert CANARY not in block.encode()
    assert open_sealed(block, [alice]) == CANARY


def test_empty_and_binary_plaintext_round_trip(alice: Identity) -> None:
    for plaintext in (b"", bytes(range(256)) * 3):
        assert open_sealed(seal(plaintext, [alice.recipient]), [alice]) == plaintext


def test_several_recipients_each_open(alice: Identity, bob: Identity, carol: Identity) -> None:
    block = seal(CANARY, [alice.recipient, bob.recipient, carol.recipient])
    header = inspect(block)
    assert header.stanza_types == ("X25519", "X25519", "X25519")
    assert header.stanza_count == 3
    for who in (alice, bob, carol):
        assert open_sealed(block, [who]) == CANARY


def test_recipients_are_deduplicated(alice: Identity, bob: Identity) -> None:
    block = seal(CANARY, [alice.recipient, bob.recipient, alice.recipient, bob.recipient])
    assert inspect(block).stanza_count == 2


def test_seal_needs_a_recipient() -> None:
    with pytest.raises(UsageError):
        seal(CANARY, [])


def test_seal_refuses_a_bad_recipient(alice: Identity) -> None:
    with pytest.raises(UsageError):
        seal(CANARY, [alice.recipient, "age1notarecipient"])


def test_seal_refuses_what_cannot_fit(alice: Identity) -> None:
    with pytest.raises(TooLarge):
        seal(b"\0" * (MAX_SEALED_BYTES * 3 // 4 + 1), [alice.recipient])


def test_rage_grease_stanza_is_tolerated_but_not_counted(sealed: str) -> None:
    # pyrage appends one random "...-grease" stanza to every message.
    stanzas, _, _ = split_header(dearmor(sealed))
    assert len(stanzas) == 3
    assert re.match(rb"-> [\x21-\x7e]{1,8}-grease", stanzas[-1])
    assert inspect(sealed) == Header(stanza_types=("X25519", "X25519"), grease_stanzas=1)


def test_not_a_recipient(sealed: str, carol: Identity) -> None:
    with pytest.raises(NotARecipient) as info:
        open_sealed(sealed, [carol])
    assert b"CANARY" not in str(info.value).encode()


def test_one_matching_identity_among_several_opens(
    sealed: str, bob: Identity, carol: Identity
) -> None:
    assert open_sealed(sealed, [carol, bob]) == CANARY


def test_open_without_identity(sealed: str) -> None:
    with pytest.raises(NoIdentity):
        open_sealed(sealed, [])


def test_open_never_uses_the_streaming_functions(
    sealed: str, alice: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    # decrypt_io and decrypt_file write out authenticated chunks before a later chunk
    # fails; only the all-or-nothing pyrage.decrypt may be used.
    monkeypatch.setattr(pyrage, "decrypt_io", fail_if_called)
    monkeypatch.setattr(pyrage, "decrypt_file", fail_if_called)
    assert open_sealed(sealed, [alice]) == CANARY


def test_age_cipher_is_a_cipher(alice: Identity) -> None:
    cipher: Cipher = AgeCipher()
    assert cipher.open(cipher.seal(CANARY, [alice.recipient]), [alice]) == CANARY


# -- identities ------------------------------------------------------------------------


def test_generate_identity() -> None:
    secret, recipient = generate_identity()
    assert secret.startswith("AGE-SECRET-KEY-1")
    assert RECIPIENT_RE.match(recipient)
    assert parse_identity(secret).recipient == recipient


def test_identity_repr_hides_the_secret() -> None:
    secret, recipient = generate_identity()
    identity = parse_identity(secret)
    assert recipient in repr(identity)
    assert secret not in repr(identity) and secret not in str(identity)
    assert secret.lower() not in repr(identity).lower()


def test_identities_compare_by_recipient() -> None:
    assert parse_identity(SPEC_SECRET) == parse_identity(SPEC_SECRET)
    assert len({parse_identity(SPEC_SECRET), parse_identity(SPEC_SECRET)}) == 1


def test_write_identity_file(tmp_path: Path) -> None:
    secret, recipient = generate_identity()
    path = tmp_path / "key.txt"
    write_identity_file(path, secret, recipient)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().split("\n")
    assert re.fullmatch(r"# created: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", lines[0])
    assert lines[1:] == [f"# public key: {recipient}", secret, ""]
    assert [i.recipient for i in load_identities(path)] == [recipient]


def test_write_identity_file_never_overwrites(tmp_path: Path) -> None:
    secret, recipient = generate_identity()
    path = tmp_path / "key.txt"
    path.write_text("precious\n")
    with pytest.raises(UsageError):
        write_identity_file(path, secret, recipient)
    assert path.read_text() == "precious\n"


def test_write_identity_file_refuses_a_planted_symlink(tmp_path: Path) -> None:
    secret, recipient = generate_identity()
    target = tmp_path / "elsewhere"
    (tmp_path / "key.txt").symlink_to(target)
    with pytest.raises(UsageError):
        write_identity_file(tmp_path / "key.txt", secret, recipient)
    assert not target.exists()


def test_write_identity_file_checks_the_pair(tmp_path: Path) -> None:
    secret, _ = generate_identity()
    _, other = generate_identity()
    with pytest.raises(UsageError) as info:
        write_identity_file(tmp_path / "key.txt", secret, other)
    assert secret not in str(info.value)
    assert not (tmp_path / "key.txt").exists()


def private_file(path: Path, content: str | bytes, mode: int = 0o600) -> Path:
    data = content.encode() if isinstance(content, str) else content
    path.write_bytes(data)
    path.chmod(mode)
    return path


def test_load_age_keygen_layout(tmp_path: Path) -> None:
    path = private_file(
        tmp_path / "key.txt",
        f"# created: 2024-01-01T00:00:00Z\n# public key: {SPEC_RECIPIENT}\n{SPEC_SECRET}\n",
    )
    (identity,) = load_identities(path)
    assert identity.recipient == SPEC_RECIPIENT


def test_load_crlf_comments_blank_lines_and_several_keys(tmp_path: Path) -> None:
    other, other_recipient = generate_identity()
    text = (
        "# created: 2024-01-01T00:00:00Z\r\n# public key: whatever\r\n\r\n"
        f"{SPEC_SECRET}\r\n   \r\n# a second key, and the first one again\r\n"
        f"{other}\r\n{SPEC_SECRET}\r\n"
    )
    identities = load_identities(private_file(tmp_path / "keys.txt", text))
    assert [i.recipient for i in identities] == [SPEC_RECIPIENT, other_recipient]


def test_load_without_final_newline(tmp_path: Path) -> None:
    (identity,) = load_identities(private_file(tmp_path / "k", SPEC_SECRET))
    assert identity.recipient == SPEC_RECIPIENT


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o666])
def test_load_refuses_a_file_others_can_use(tmp_path: Path, mode: int) -> None:
    path = private_file(tmp_path / "key.txt", SPEC_SECRET + "\n", mode)
    with pytest.raises(NoIdentity, match="by others") as info:
        load_identities(path)
    assert f"chmod 600 {path}" in str(info.value)


def test_load_accepts_owner_read_only(tmp_path: Path) -> None:
    path = private_file(tmp_path / "key.txt", SPEC_SECRET + "\n", 0o400)
    assert load_identities(path)[0].recipient == SPEC_RECIPIENT


def test_load_refuses_an_oversized_file(tmp_path: Path) -> None:
    path = private_file(tmp_path / "big", "#" * MAX_IDENTITY_FILE_BYTES + "\n" + SPEC_SECRET)
    with pytest.raises(NoIdentity, match="larger than"):
        load_identities(path)


def test_load_accepts_a_file_at_the_cap(tmp_path: Path) -> None:
    padding = "#" * (MAX_IDENTITY_FILE_BYTES - len(SPEC_SECRET) - 2) + "\n"
    path = private_file(tmp_path / "cap", padding + SPEC_SECRET + "\n")
    assert path.stat().st_size == MAX_IDENTITY_FILE_BYTES
    assert load_identities(path)[0].recipient == SPEC_RECIPIENT


@pytest.mark.parametrize(
    "content",
    [
        "hello world\n",
        "# only a comment\n\n",
        "",
        SPEC_SECRET[:-1] + "Q\n",  # checksum broken
        SPEC_SECRET + " trailing words\n",
        SPEC_SECRET + "\nage1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj\n",
        "AGE-SECRET-KEY-PQ-1XX76JRALNLXDMEW0CRK45QMCCH4X06SE84UN3VPM33W6HWDX0H3SK3ZQFR\n",
        "AGE-PLUGIN-YUBIKEY-1QQQQQQQQQQQQQQQQQQQQQQQQ\n",
        b"\xff\xfe" + SPEC_SECRET.encode(),
        "-----BEGIN OPENSSH PRIVATE KEY-----\n",
    ],
    ids=[
        "garbage",
        "comments-only",
        "empty",
        "bad-checksum",
        "junk-after-key",
        "recipient-line",
        "post-quantum",
        "plugin",
        "not-ascii",
        "ssh-key",
    ],
)
def test_load_refuses_garbage(tmp_path: Path, content: str | bytes) -> None:
    path = private_file(tmp_path / "key.txt", content)
    with pytest.raises(NoIdentity) as info:
        load_identities(path)
    message = str(info.value)
    # The offending line is named by number, never shown: it may be a secret.
    text = content.decode(errors="replace") if isinstance(content, bytes) else content
    for line in text.split("\n"):
        assert len(line) < 8 or line.strip() not in message


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NoIdentity, match="does not exist"):
        load_identities(tmp_path / "nope")


def test_load_directory_and_fifo(tmp_path: Path) -> None:
    with pytest.raises(NoIdentity):
        load_identities(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    # Opening a FIFO for reading would wait for a writer: the deadline only bounds that wait.
    outcome: list[Exception] = []

    def load() -> None:
        try:
            load_identities(fifo)
        except Exception as exc:
            outcome.append(exc)

    reader = threading.Thread(target=load, daemon=True)
    reader.start()
    reader.join(timeout=60)
    assert not reader.is_alive(), "load_identities waited on a FIFO"
    assert isinstance(outcome[0], NoIdentity) and "not a regular file" in str(outcome[0])


def test_load_unreadable_file(tmp_path: Path) -> None:
    path = private_file(tmp_path / "key.txt", SPEC_SECRET, 0o000)
    if os.access(path, os.R_OK):  # running as root: permissions do not stop reading
        pytest.skip("root can read a mode-000 file")
    with pytest.raises(NoIdentity):
        load_identities(path)


# -- recipients ------------------------------------------------------------------------


def test_recipient_pattern() -> None:
    assert RECIPIENT_RE.pattern == r"^age1[02-9ac-hj-np-z]{58}$"


def test_check_recipient_accepts(alice: Identity) -> None:
    assert check_recipient(alice.recipient) == alice.recipient
    assert check_recipient(SPEC_RECIPIENT) == SPEC_RECIPIENT


@pytest.mark.parametrize(
    "text",
    [
        "",
        "age1",
        SPEC_RECIPIENT.upper(),
        SPEC_RECIPIENT + "\n",
        " " + SPEC_RECIPIENT,
        SPEC_RECIPIENT[:-1] + ("q" if SPEC_RECIPIENT[-1] != "q" else "p"),  # checksum
        SPEC_RECIPIENT[:-1],
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHt6 someone",
        "age1pq1x34nzsvr0rxjsgdn8zgyhfe8j7ceq5r9rdelkjuh3y235jzxshfg87pzf5zr",
        "age1tag1qt8lw0ual6avlwmwatk888yqnmdamm7xfd0wak53ut6elz5c4swx2yqdj4e",
    ],
)
def test_check_recipient_refuses(text: str) -> None:
    with pytest.raises(UsageError):
        check_recipient(text)


def test_check_recipient_never_echoes_a_secret_key() -> None:
    with pytest.raises(UsageError) as info:
        check_recipient(SPEC_SECRET)
    assert SPEC_SECRET not in str(info.value)
    assert "secret key" in str(info.value)


# -- inspect(): canonical armor (hostile C13) ------------------------------------------


def test_inspect_accepts_every_length_pyrage_writes(alice: Identity) -> None:
    for size in range(0, 150):
        block = seal(os.urandom(size), [alice.recipient])
        assert armor(dearmor(block)) == block
        assert inspect(block).stanza_count == 1


def test_inspect_accepts_a_full_last_armor_line(alice: Identity) -> None:
    # The grease stanza's random size decides how full the last line is; about one
    # block in 48 ends on a full line, which must be accepted like any other.
    for attempt in range(3000):
        block = seal(os.urandom(attempt % 200), [alice.recipient])
        if len(block.split("\n")[-3]) == 64:
            assert inspect(block).stanza_count == 1
            return
    raise AssertionError("no block with a full last line in 3000 tries")


def _padded_block(alice: Identity) -> str:
    while True:
        block = seal(CANARY, [alice.recipient])
        if block.split("\n")[-3].endswith("="):
            return block


def _flip_unused_bits(block: str) -> str:
    lines = block.split("\n")
    last = lines[-3]
    data = last.rstrip("=")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    sibling = alphabet[alphabet.index(data[-1]) ^ 1]  # lowest bit is never data here
    lines[-3] = data[:-1] + sibling + last[len(data) :]
    return "\n".join(lines)


def _rewrap(block: str, width: int) -> str:
    text = "".join(block.split("\n")[1:-2])
    lines = [text[i : i + width] for i in range(0, len(text), width)]
    return "\n".join([BEGIN, *lines, END]) + "\n"


NOT_CANONICAL: dict[str, Callable[[str], str]] = {
    "crlf": lambda b: b.replace("\n", "\r\n"),
    "cr-on-one-line": lambda b: b.replace("\n", "\r\n", 2).replace("\r\n", "\n", 1),
    "rewrap-76": lambda b: _rewrap(b, 76),
    "rewrap-60": lambda b: _rewrap(b, 60),
    "leading-space": lambda b: " " + b,
    "leading-newline": lambda b: "\n" + b,
    "trailing-space": lambda b: b + " ",
    "trailing-blank-line": lambda b: b + "\n",
    "no-final-newline": lambda b: b[:-1],
    "comment-before": lambda b: "# sealed\n" + b,
    "comment-after": lambda b: b + "# sealed\n",
    "comment-inside": lambda b: b.replace("\n", "\n# note\n", 1),
    "blank-line-inside": lambda b: b.replace("\n", "\n\n", 2).replace("\n\n", "\n", 1),
    "indented": lambda b: "\n".join("  " + line if line else line for line in b.split("\n")),
    "trailing-whitespace-on-line": lambda b: b.replace("\n", " \n", 2).replace(" \n", "\n", 1),
    "tab": lambda b: b.replace("\n", "\t\n", 1),
    "trailing-junk": lambda b: b + "junk\n",
    "second-block": lambda b: b + b,
    "lowercase-label": lambda b: b.replace("AGE ENCRYPTED", "age encrypted"),
    "pgp-checksum": lambda b: b.replace("\n" + END, "\n=yjEF\n" + END),
    "armor-header": lambda b: b.replace(BEGIN + "\n", BEGIN + "\nVersion: 1\n\n"),
    "nbsp": lambda b: b.replace("\n", "\u00a0\n", 1),
}


@pytest.mark.parametrize("name", sorted(NOT_CANONICAL))
def test_inspect_refuses_rewrapped_armor(sealed: str, name: str) -> None:
    variant = NOT_CANONICAL[name](sealed)
    assert variant != sealed
    with pytest.raises(IntegrityError, match="sealed block is not in canonical armor"):
        inspect(variant)


def test_inspect_refuses_missing_padding_and_non_canonical_bits(alice: Identity) -> None:
    block = _padded_block(alice)
    inspect(block)
    for variant in (block.replace("=\n", "\n"), _flip_unused_bits(block)):
        assert variant != block
        with pytest.raises(IntegrityError, match="canonical armor"):
            inspect(variant)


def test_crlf_armor_would_still_decrypt_with_pyrage_alone(sealed: str, alice: Identity) -> None:
    # Why inspect() has to check the armor itself: pyrage accepts a re-wrapped block.
    crlf = sealed.replace("\n", "\r\n").encode()
    assert pyrage.decrypt(crlf, [alice.key]) == CANARY
    with pytest.raises(IntegrityError):
        open_sealed(crlf.decode(), [alice])


def test_size_cap_comes_first() -> None:
    # Neither text is a valid sealed block: TooLarge shows the size was checked before it.
    with pytest.raises(TooLarge):
        inspect("x" * (MAX_SEALED_BYTES + 1))
    with pytest.raises(TooLarge):
        open_sealed(BEGIN + "\n" + "A" * MAX_SEALED_BYTES + "\n" + END + "\n", [])


# -- inspect(): stanza policy (hostile C12) --------------------------------------------


def test_scrypt_stanza_refused_before_decrypting(
    scrypt_block: str, alice: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert split_header(dearmor(scrypt_block))[0][0].startswith(b"-> scrypt ")
    monkeypatch.setattr(pyrage, "decrypt", fail_if_called)
    monkeypatch.setattr(pyrage.passphrase, "decrypt", fail_if_called)
    with pytest.raises(IntegrityError, match="'scrypt'"):
        inspect(scrypt_block)
    with pytest.raises(IntegrityError, match="'scrypt'") as info:
        open_sealed(scrypt_block, [alice])
    assert "only X25519" in str(info.value)


def test_plugin_stanza_refused_before_decrypting(
    sealed: str, alice: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    stanzas, mac, payload = split_header(dearmor(sealed))
    plugin = stanza("piv-p256", "SECRETARG", "Ah2Rr1tGQ7", body=os.urandom(32))
    hostile = build([stanzas[0], plugin, *stanzas[1:]], mac, payload)
    monkeypatch.setattr(pyrage, "decrypt", fail_if_called)
    with pytest.raises(IntegrityError) as info:
        open_sealed(hostile, [alice])
    assert "'piv-p256'" in str(info.value)
    assert "SECRETARG" not in str(info.value)


@pytest.mark.parametrize(
    "extra",
    [
        stanza(
            "ssh-ed25519",
            "Xyg06A",
            "rH24zuz7XHFc1lRyQmMrekpLrcKrJupohEh/YjvQCxs",
            body=os.urandom(32),
        ),
        stanza("mlkem768x25519", "AAAA", body=os.urandom(32)),
        stanza(
            "x25519", base64.b64encode(os.urandom(32)).decode().rstrip("="), body=os.urandom(32)
        ),
        stanza("age-plugin-yubikey", body=b"x"),
        stanza("scrypt", "rF0/NwblUHHTpgQgRpe5CQ", "10", body=os.urandom(32)),
    ],
    ids=["ssh", "post-quantum", "lowercase-x25519", "plugin-name", "scrypt-with-x25519"],
)
def test_other_stanza_types_refused(sealed: str, extra: bytes) -> None:
    stanzas, mac, payload = split_header(dearmor(sealed))
    with pytest.raises(IntegrityError, match="only X25519"):
        inspect(build([extra, *stanzas], mac, payload))


def test_grease_is_tolerated_only_in_rage_shape_and_place(sealed: str) -> None:
    stanzas, mac, payload = split_header(dearmor(sealed))
    x25519, grease = stanzas[0], stanza("ab-grease", "x", body=b"y" * 10)
    assert inspect(build([x25519, grease], mac, payload)).grease_stanzas == 1
    refused = [
        [grease, x25519],  # not last
        [x25519, grease, grease],  # two
        [x25519, stanza("ab-grease", body=b"y" * 101)],  # body too long
        [x25519, stanza("abcdefghi-grease")],  # tag too long
        [x25519, stanza("ab-grease", "1", "2", "3", "4", "5")],  # too many arguments
        [x25519, stanza("ab-grease", "123456789")],  # argument too long
        [grease],  # no recipient at all
    ]
    for parts in refused:
        with pytest.raises(IntegrityError):
            inspect(build(parts, mac, payload))


def test_long_stanza_type_is_quoted_short(sealed: str) -> None:
    stanzas, mac, payload = split_header(dearmor(sealed))
    with pytest.raises(IntegrityError) as info:
        inspect(build([stanza("T" * 5000), *stanzas], mac, payload))
    assert len(str(info.value)) < 200


def test_too_many_stanzas_refused(sealed: str) -> None:
    _, mac, payload = split_header(dearmor(sealed))
    many = [x25519_stanza() for _ in range(MAX_STANZAS + 1)]
    with pytest.raises(IntegrityError, match="more than"):
        inspect(build(many, mac, payload))
    assert inspect(build(many[:MAX_STANZAS], mac, payload)).stanza_count == MAX_STANZAS


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b.replace(b"age-encryption.org/v1", b"age-encryption.org/v2", 1),
        lambda b: b.replace(b"age-encryption.org/v1\n", b"", 1),
        lambda b: b[: b.index(b"\n--- ") + 1] + b"\n" + b[b.index(b"\n--- ") + 1 :],
        lambda b: b.replace(b"-> X25519 ", b"-> X25519 extra ", 1),
        lambda b: b.replace(b"-> X25519 ", b"->  X25519 ", 1),
        lambda b: b.replace(b"\n--- ", b"\n---  ", 1),
        lambda b: b.replace(b"\n--- ", b"\n", 1),
        lambda b: b[: header_end(b) + 10],  # nonce cut short
        lambda b: b[: b.index(b"\n--- ")],  # no MAC line at all
        lambda b: b.replace(b"\n", b"\r\n", 2),
    ],
    ids=[
        "version",
        "no-version",
        "blank-line",
        "x25519-args",
        "double-space",
        "mac-space",
        "no-mac",
        "short-nonce",
        "truncated-header",
        "crlf-header",
    ],
)
def test_malformed_header_refused(sealed: str, mangle: Callable[[bytes], bytes]) -> None:
    binary = dearmor(sealed)
    hostile = mangle(binary)
    assert hostile != binary
    with pytest.raises(IntegrityError):
        inspect(armor(hostile))


# -- tampering (hostile C3, C4, C5) ----------------------------------------------------


def _refused(block: str | bytes, identities: list[Identity]) -> type[Exception]:
    """How a tampered armored block (str) or binary file (bytes) is refused."""
    try:
        if isinstance(block, bytes):
            plaintext = open_binary(block, identities)
        else:
            plaintext = open_sealed(block, identities)
    except (NotARecipient, IntegrityError) as exc:
        assert b"CANARY" not in str(exc).encode()
        return type(exc)
    raise AssertionError(f"tampered block opened ({len(plaintext)} bytes released)")


def _flip(binary: bytes, offset: int, bit: int) -> bytes:
    return binary[:offset] + bytes([binary[offset] ^ (1 << bit)]) + binary[offset + 1 :]


def test_header_bit_flips_sampled(sealed: str, alice: Identity) -> None:
    binary = dearmor(sealed)
    end = header_end(binary)
    rng = random.Random(20240301)
    offsets = sorted({0, 21, end - 2, end - 1, *rng.sample(range(end), 36)})
    seen: set[type[Exception]] = set()
    for offset in offsets:
        seen.add(_refused(armor(_flip(binary, offset, rng.randrange(8))), [alice]))
    assert IntegrityError in seen


def test_flipped_own_stanza_reads_as_not_a_recipient(
    sealed: str, alice: Identity, bob: Identity
) -> None:
    binary = dearmor(sealed)
    # A different base64 digit inside the first stanza's body (a flipped bit could make
    # it a non-base64 byte, which is a parse error instead): the key no longer unwraps.
    offset = binary.index(b"\n", binary.index(b"-> X25519 ")) + 5
    digit = b"B" if binary[offset : offset + 1] == b"A" else b"A"
    flipped = armor(binary[:offset] + digit + binary[offset + 1 :])
    results = {_refused(flipped, [alice]), _refused(flipped, [bob])}
    # Whoever's stanza it was sees "not a recipient"; the other recipient unwraps the
    # file key and finds the header MAC broken: "tampered".
    assert results == {NotARecipient, IntegrityError}


@pytest.mark.slow
def test_header_bit_flips_every_offset_and_bit(sealed: str, alice: Identity, bob: Identity) -> None:
    binary = dearmor(sealed)
    for offset in range(header_end(binary) + 16):
        for bit in range(8):
            _refused(armor(_flip(binary, offset, bit)), [alice, bob])


@pytest.fixture(scope="module")
def big(alice: Identity) -> tuple[bytes, bytes]:
    plaintext = (CANARY + os.urandom(64)) * (200_000 // (len(CANARY) + 64))
    return plaintext, dearmor(seal(plaintext, [alice.recipient]))


def test_payload_bit_flip_in_each_chunk(big: tuple[bytes, bytes], alice: Identity) -> None:
    plaintext, binary = big
    start = header_end(binary) + 16
    chunks = -(-len(plaintext) // CHUNK)
    assert chunks == 4 and len(binary) == start + len(plaintext) + chunks * TAG
    assert open_sealed(armor(binary), [alice]) == plaintext
    offsets = [header_end(binary) + 3]  # the nonce
    for index in range(chunks):
        first = start + index * (CHUNK + TAG)
        last = min(first + CHUNK + TAG, len(binary)) - 1
        offsets += [first, (first + last) // 2, last]
    for offset in offsets:
        assert _refused(armor(_flip(binary, offset, 3)), [alice]) is IntegrityError


def test_truncation_around_chunk_boundaries(big: tuple[bytes, bytes], alice: Identity) -> None:
    _, binary = big
    end = header_end(binary)
    lengths = {
        0,
        1,
        10,
        end - 1,
        end,
        end + 1,
        end + 15,
        end + 16,
        end + 17,
        len(binary) - 1,
        len(binary) - TAG,
        len(binary) - TAG - 1,
    }
    for index in (1, 2, 3):
        boundary = end + 16 + index * (CHUNK + TAG)
        lengths |= {boundary + d for d in (-TAG - 1, -TAG, -1, 0, 1, TAG, TAG + 1)}
    for length in sorted(lengths):
        assert length < len(binary)
        _refused(armor(binary[:length]), [alice])


@pytest.mark.parametrize(
    "garbage",
    [b"\0", b"garbage", os.urandom(TAG), os.urandom(CHUNK + TAG)],
    ids=["one-byte", "text", "a-tag", "a-chunk"],
)
def test_trailing_garbage(big: tuple[bytes, bytes], alice: Identity, garbage: bytes) -> None:
    _, binary = big
    assert _refused(armor(binary + garbage), [alice]) is IntegrityError


@pytest.mark.slow
def test_truncation_every_length(alice: Identity) -> None:
    plaintext = os.urandom(CHUNK + 100)
    binary = dearmor(seal(plaintext, [alice.recipient]))
    # Through the whole policy path where the header is cut; below the armor (the same
    # parser and pyrage call, without re-armoring 66 KB each time) for every length.
    for length in range(1, header_end(binary) + 64):
        _refused(armor(binary[:length]), [alice])
    for length in range(len(binary)):
        with pytest.raises(crypto.AgeFailure) as info:
            crypto.decrypt_message(binary[:length], [alice], armored=False)
        assert not isinstance(info.value, crypto.NoMatch)


# -- inspect() on arbitrary input ------------------------------------------------------

_FAST = settings(
    max_examples=300,
    deadline=1000,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _inspect_only_refuses(text: str) -> None:
    with contextlib.suppress(IntegrityError, TooLarge):
        inspect(text)


@_FAST
@given(st.text(max_size=3000))
def test_inspect_arbitrary_text(text: str) -> None:
    _inspect_only_refuses(text)


_PIECES = [
    b"age-encryption.org/v1\n",
    b"age-encryption.org/",
    b"-> ",
    b"X25519 ",
    b"scrypt ",
    b"--- ",
    b"\n",
    b"\r\n",
    b" ",
    b"A" * 43,
    b"A" * 64,
    b"AAAA",
    b"=",
    b"\xff",
    b"-grease",
    b"->",
    b"---",
]


@_FAST
@given(st.lists(st.sampled_from(_PIECES) | st.binary(max_size=40), max_size=40))
def test_inspect_arbitrary_headers(pieces: list[bytes]) -> None:
    _inspect_only_refuses(armor(b"".join(pieces)))


@_FAST
@given(data=st.data())
def test_inspect_mutated_block(sealed: str, data: st.DataObject) -> None:
    text = sealed
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 3))
        text = text[:at] + data.draw(st.text(max_size=3)) + text[at + cut :]
    _inspect_only_refuses(text)


# -- binary age files (record format 2) ------------------------------------------------


def test_binary_round_trip(alice: Identity, bob: Identity) -> None:
    sealed = seal_binary(CANARY, [alice.recipient, bob.recipient, alice.recipient])
    assert sealed.startswith(b"age-encryption.org/v1\n")
    assert inspect_binary(sealed).stanza_types == ("X25519", "X25519")
    assert open_binary(sealed, [alice]) == CANARY
    assert open_binary(sealed, [bob]) == CANARY
    assert open_binary(seal_binary(b"", [alice.recipient]), [alice]) == b""


def test_seal_binary_checks_recipients_and_size(alice: Identity) -> None:
    with pytest.raises(UsageError):
        seal_binary(CANARY, [])
    with pytest.raises(UsageError):
        seal_binary(CANARY, ["age1notarecipient"])
    with pytest.raises(TooLarge):
        seal_binary(b"x" * (MAX_SEALED_BYTES + 1), [alice.recipient])


def test_inspect_binary_refuses_armored_input(sealed: str, alice: Identity) -> None:
    for armored in (sealed.encode(), b"\n  " + sealed.encode()):
        with pytest.raises(IntegrityError, match="armored"):
            inspect_binary(armored)
        with pytest.raises(IntegrityError, match="armored"):
            open_binary(armored, [alice])


def test_inspect_binary_size_cap_comes_first() -> None:
    with pytest.raises(TooLarge):
        inspect_binary(b"x" * (MAX_SEALED_BYTES + 1))


def test_binary_scrypt_stanza_refused_before_decrypting(
    scrypt_block: str, alice: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = dearmor(scrypt_block)
    monkeypatch.setattr(pyrage, "decrypt", fail_if_called)
    monkeypatch.setattr(pyrage.passphrase, "decrypt", fail_if_called)
    with pytest.raises(IntegrityError, match="'scrypt'"):
        inspect_binary(binary)
    with pytest.raises(IntegrityError, match="'scrypt'"):
        open_binary(binary, [alice])


def test_binary_truncated_or_damaged_is_an_integrity_error(alice: Identity) -> None:
    binary = seal_binary(CANARY * 50, [alice.recipient])
    end = header_end(binary)
    for length in (0, 10, end - 1, end, end + 16, len(binary) - 1):
        assert _refused(binary[:length], [alice]) is IntegrityError
    for offset in (end - 3, end + 3, end + 16, len(binary) - 1):
        assert _refused(_flip(binary, offset, 0), [alice]) is IntegrityError
    assert _refused(binary + b"\0", [alice]) is IntegrityError


def test_binary_wrong_key_is_not_a_recipient(alice: Identity, carol: Identity) -> None:
    binary = seal_binary(CANARY, [alice.recipient])
    with pytest.raises(NotARecipient):
        open_binary(binary, [carol])
    with pytest.raises(NoIdentity):
        open_binary(binary, [])
