"""The age adapter: the only module of cmgit that knows the age format and pyrage.

Two layers live here.

* The policy layer (`seal`, `inspect`, `open_sealed`, identity files) is what the rest
  of cmgit uses. A sealed block must be canonical ASCII armor around an age message
  whose recipient stanzas are all X25519; that is checked in pure Python by `inspect`
  before any key is used, so a hostile record never reaches the decryption code with a
  passphrase stanza, a plugin stanza or a re-wrapped armor. Failures map to the
  CmgitError classes of cmgit.errors. `seal_binary`, `inspect_binary` and `open_binary`
  apply the same policy to binary age files (record format 2's sealed entries and
  wrapped case keys), which are stored as files of their own and so need no armor.
* The adapter layer (`decrypt_message`) decrypts any age message, armored or binary, by
  identity or passphrase, with no stanza policy. It exists so the conformance vectors
  of the age project can be run against exactly the code that parses and decrypts
  records, and it reports which stage failed through the AgeFailure classes.

Plaintext only ever lives in memory: pyrage.decrypt authenticates the whole payload
before returning, whereas its file and stream functions write out the chunks that
authenticated before a later chunk fails. They are never used here.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pyrage
from pyrage import passphrase as age_passphrase
from pyrage import x25519

from cmgit.errors import (
    CmgitError,
    IntegrityError,
    NoIdentity,
    NotARecipient,
    TooLarge,
    UsageError,
)

__all__ = [
    "MAX_IDENTITY_FILE_BYTES",
    "MAX_SCRYPT_WORK_FACTOR",
    "MAX_SEALED_BYTES",
    "MAX_STANZAS",
    "RECIPIENT_RE",
    "AgeCipher",
    "AgeFailure",
    "ArmorFailure",
    "Cipher",
    "HMACFailure",
    "Header",
    "HeaderFailure",
    "Identity",
    "NoMatch",
    "PayloadFailure",
    "check_recipient",
    "decrypt_message",
    "generate_identity",
    "inspect",
    "inspect_binary",
    "load_identities",
    "open_binary",
    "open_sealed",
    "parse_identity",
    "seal",
    "seal_binary",
    "write_identity_file",
]

# Bech32 data characters only, lower case, fixed length: an X25519 recipient is 32
# bytes, which Bech32 spells as 52 characters plus a 6-character checksum.
RECIPIENT_RE = re.compile(r"^age1[02-9ac-hj-np-z]{58}$")

# A record's sealed block is refused above this size before it is even parsed, so a
# hostile record cannot make cmgit allocate or decrypt without bound.
MAX_SEALED_BYTES = 8 * 1024 * 1024
# An identity file holds a few keys and comments; anything bigger is not one.
MAX_IDENTITY_FILE_BYTES = 64 * 1024
# Far above any programme's recipient list, and it bounds the X25519 work one hostile
# header can cause for every identity tried.
MAX_STANZAS = 1000
# scrypt needs 128 * r * 2**work_factor bytes of memory (r = 8): 4 GiB at 22, the
# default ceiling of the reference implementation. rage has no fixed ceiling: it allows
# four more than what it measures as one second of work on the machine at hand, so
# whether a work factor of 23 (8 GiB) is attempted depends on where it runs.
MAX_SCRYPT_WORK_FACTOR = 22

_ARMOR_BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----"
_ARMOR_END = "-----END AGE ENCRYPTED FILE-----"
_ARMOR_COLUMNS = 64
_ARMOR_BYTES_PER_LINE = 48  # 64 base64 characters
# Whitespace the reference armor reader skips around the block, and its bound on it.
_ARMOR_WHITESPACE = b" \t\r\n\v\f"
_ARMOR_MAX_WHITESPACE = 1024

_VERSION_LINE = b"age-encryption.org/v1"
_VERSION_PREFIX = b"age-encryption.org/"
_STANZA_PREFIX = b"-> "
_MAC_PREFIX = b"---"
_STANZA_ARGS_RE = re.compile(rb"[\x21-\x7e]+(?: [\x21-\x7e]+)*")
_BODY_LINE_RE = re.compile(rb"[A-Za-z0-9+/]{0,64}")
_MAC_LINE_RE = re.compile(rb"--- ([A-Za-z0-9+/]{43})")
_BODY_COLUMNS = 64
_NONCE_BYTES = 16

# rage (and so pyrage) appends one random "grease" stanza to every message it encrypts,
# to keep other implementations honest about ignoring unknown stanzas: a tag of 1-8
# printable characters plus "-grease", up to 4 arguments of 1-8 characters, a body of at
# most 100 bytes, always last. No identity cmgit passes to pyrage reacts to it, so the
# policy tolerates exactly that shape in exactly that place and nothing else.
_GREASE_TAG_RE = re.compile(r"[\x21-\x7e]{1,8}-grease")
_GREASE_ARG_RE = re.compile(r"[\x21-\x7e]{1,8}")
_GREASE_MAX_ARGS = 4
_GREASE_MAX_BODY = 100

_CANONICAL_DECIMAL_RE = re.compile(r"[1-9][0-9]*")
_X25519_TAG = "X25519"
_SCRYPT_TAG = "scrypt"
# Bech32: human-readable part "AGE-SECRET-KEY-" and the separator "1".
_X25519_IDENTITY_PREFIX = "AGE-SECRET-KEY-1"

_NOT_CANONICAL = "sealed block is not in canonical armor"
_TOO_LARGE_TO_SEAL = f"record is too large to seal (limit {MAX_SEALED_BYTES // (1024 * 1024)} MiB)"


# --------------------------------------------------------------------------------------
# Adapter failures: which stage of decryption refused the message.
#
# What can be told apart, and by whom:
# * ArmorFailure and HeaderFailure come from this module's own parsers, which run before
#   pyrage: pyrage parses a message that does not start with the armor line as binary
#   (so bad armor surfaces as "Header is invalid"), rejects whitespace around the armor
#   that the format allows, and accepts two malformed stanza encodings (a body without
#   its final short line). Both parsers follow the age specification instead.
# * pyrage reports header problems it finds itself (X25519 share or scrypt arguments,
#   an scrypt stanza mixed with others) as "Header is invalid" or "Unknown age format";
#   a truncated header and a missing nonce both read as "failed to fill whole buffer".
# * pyrage cannot tell a wrong passphrase from a damaged scrypt stanza ("Decryption
#   failed" for both): both are NoMatch, as the vectors expect.
# * pyrage cannot tell a flipped payload bit from a truncated payload from a missing
#   final chunk: STREAM only knows that a chunk does not authenticate ("decryption
#   error", "age file is truncated"). All are PayloadFailure.
# * Trailing data after the final chunk is "last chunk has been processed": also a
#   PayloadFailure, as the vectors expect.
# * No partial plaintext is ever available: pyrage.decrypt returns all or nothing.
# --------------------------------------------------------------------------------------


class AgeFailure(CmgitError):
    """An age message could not be decrypted (the stage is told by the subclass)."""


class ArmorFailure(AgeFailure, IntegrityError):
    """The ASCII armor around the message is malformed."""


class HeaderFailure(AgeFailure, IntegrityError):
    """The age header does not parse, or names parameters that are refused."""


class NoMatch(AgeFailure, NotARecipient):
    """No identity or passphrase given unwraps any recipient stanza."""


class HMACFailure(AgeFailure, IntegrityError):
    """A file key was unwrapped but the header MAC does not match it."""


class PayloadFailure(AgeFailure, IntegrityError):
    """The encrypted payload does not authenticate to the end; nothing is released."""


# pyrage reports every failure as DecryptError with rage's message; these prefixes are
# the messages of pyrage 1.4 (the age crate 0.12), found by running the conformance vectors.
_PYRAGE_MESSAGES: tuple[tuple[str, type[AgeFailure]], ...] = (
    ("No matching keys found", NoMatch),
    ("Decryption failed", NoMatch),  # only raised by the scrypt identity: bad passphrase
    ("Header MAC is invalid", HMACFailure),
    ("Header is invalid", HeaderFailure),
    ("Unknown age format", HeaderFailure),
    ("failed to fill whole buffer", HeaderFailure),
    ("Excessive work parameter", HeaderFailure),
    ("decryption error", PayloadFailure),
    ("age file is truncated", PayloadFailure),
    ("last chunk has been processed", PayloadFailure),
    ("Last STREAM chunk is empty", PayloadFailure),
)


def _classify(message: str) -> type[AgeFailure]:
    for prefix, failure in _PYRAGE_MESSAGES:
        if message.startswith(prefix):
            return failure
    return AgeFailure


def _is_rust_panic(exc: BaseException) -> bool:
    # A panic inside the Rust code surfaces as pyo3's PanicException, which derives from
    # BaseException and has no importable home; hostile input must not turn it into a
    # crash with a traceback, so it is recognised by name.
    return type(exc).__name__ == "PanicException"


# --------------------------------------------------------------------------------------
# Identities and recipients
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """An X25519 identity: its public recipient and the opaque pyrage secret key."""

    recipient: str
    # repr=False keeps the secret out of logs and tracebacks; compare=False because
    # pyrage keys have no equality of their own and the recipient identifies the key.
    key: Any = field(repr=False, compare=False)


def generate_identity() -> tuple[str, str]:
    """Return a new (secret "AGE-SECRET-KEY-...", recipient "age1...") pair."""
    key = x25519.Identity.generate()
    return str(key), str(key.to_public())


def parse_identity(secret: str) -> Identity:
    """Parse one "AGE-SECRET-KEY-..." string; NoIdentity if it is not one."""
    if not secret.upper().startswith(_X25519_IDENTITY_PREFIX):
        raise NoIdentity("not an age X25519 secret key")
    try:
        key = x25519.Identity.from_str(secret)
    except pyrage.IdentityError:
        raise NoIdentity("not a valid age X25519 secret key") from None
    return Identity(recipient=str(key.to_public()), key=key)


def write_identity_file(path: Path, secret: str, recipient: str) -> None:
    """Create PATH (mode 0600, never overwriting) in the layout age-keygen writes."""
    try:
        identity = parse_identity(secret)
    except NoIdentity:
        raise UsageError("the secret is not an age X25519 secret key") from None
    if identity.recipient != recipient:
        raise UsageError("the recipient does not belong to the secret key")
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    content = f"# created: {created}\n# public key: {recipient}\n{secret}\n".encode("ascii")
    try:
        # O_EXCL: an existing key is never replaced (it may be the only copy of
        # someone's access to years of case records), and a planted symlink is refused.
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        raise UsageError(
            f"identity file {path} already exists; refusing to overwrite it",
            hint="choose another file name",
        ) from None
    except OSError as exc:
        raise CmgitError(f"cannot create identity file {path}: {exc.strerror}") from None
    try:
        # The umask can only remove bits, but be explicit about the result.
        os.fchmod(fd, 0o600)
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        # A half-written key file is worse than none: it would load as garbage later.
        path.unlink(missing_ok=True)
        raise CmgitError(f"cannot write identity file {path}: {exc.strerror}") from None
    os.close(fd)


def load_identities(path: Path) -> tuple[Identity, ...]:
    """Read the X25519 identities of an age identity file.

    CRLF line ends, blank lines, "#" comments and several keys are accepted, as age
    accepts them. The file must be private to its owner and small.
    """
    try:
        # O_NONBLOCK so that a FIFO cannot hang the command before fstat refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise NoIdentity(
            f"identity file {path} does not exist", hint="create one with: cmgit keygen -o FILE"
        ) from None
    except OSError as exc:
        raise NoIdentity(f"cannot open identity file {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NoIdentity(f"identity file {path} is not a regular file")
        if info.st_size > MAX_IDENTITY_FILE_BYTES:
            raise NoIdentity(
                f"identity file {path} is larger than {MAX_IDENTITY_FILE_BYTES // 1024} KiB;"
                " it is not an age identity file"
            )
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            what = "readable" if mode & 0o044 else "writable"
            raise NoIdentity(
                f"identity file {path} is {what} by others (mode {mode:04o}); run chmod 600 {path}"
            )
        # Read one byte more than allowed: the file may have grown since fstat.
        raw = os.read(fd, MAX_IDENTITY_FILE_BYTES + 1)
    except OSError as exc:
        raise NoIdentity(f"cannot read identity file {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_IDENTITY_FILE_BYTES:
        raise NoIdentity(f"identity file {path} is too large; it is not an age identity file")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise NoIdentity(f"identity file {path} is not an age identity file") from None

    identities: dict[str, Identity] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        # Messages name the line, never its content: it may be a secret key.
        if not line.upper().startswith(_X25519_IDENTITY_PREFIX):
            raise NoIdentity(
                f"identity file {path}, line {number}: not an age X25519 secret key",
                hint="cmgit uses X25519 keys only (AGE-SECRET-KEY-...)",
            )
        try:
            identity = parse_identity(line)
        except NoIdentity:
            raise NoIdentity(
                f"identity file {path}, line {number}: invalid age secret key"
            ) from None
        identities.setdefault(identity.recipient, identity)
    if not identities:
        raise NoIdentity(f"identity file {path} holds no age X25519 secret key")
    return tuple(identities.values())


def check_recipient(text: str) -> str:
    """Return TEXT if it is an age X25519 recipient ("age1..."), else UsageError."""
    if text.strip().upper().startswith("AGE-SECRET-KEY-"):
        # Never echo it: someone pasted a secret key where the public one belongs.
        raise UsageError("that is an age secret key, not a recipient; give its age1... recipient")
    if not RECIPIENT_RE.fullmatch(text):
        raise UsageError("not an age X25519 recipient (age1 followed by 58 characters)")
    try:
        x25519.Recipient.from_str(text)
    except pyrage.RecipientError:
        raise UsageError("not a valid age X25519 recipient (bad checksum or key)") from None
    return text


# --------------------------------------------------------------------------------------
# Armor and header parsing (pure Python, no keys)
# --------------------------------------------------------------------------------------


def _b64_raw(text: bytes) -> bytes | None:
    """Decode canonical unpadded base64 (the age header encoding), or None."""
    if len(text) % 4 == 1:
        return None
    try:
        decoded = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        return None
    # Re-encoding catches non-zero trailing bits, which the age format forbids so that
    # a header has exactly one encoding (the MAC covers the encoded bytes).
    if base64.b64encode(decoded).rstrip(b"=") != text:
        return None
    return decoded


def _b64_padded(text: bytes) -> bytes | None:
    """Decode canonical padded base64 (the armor encoding), or None."""
    try:
        decoded = base64.b64decode(text, validate=True)
    except binascii.Error:
        return None
    if base64.b64encode(decoded) != text:
        return None
    return decoded


def _armor(data: bytes) -> str:
    """The one canonical armor of DATA, as age and rage write it."""
    # Whole lines of 48 bytes encode to 64 characters without padding, so one encoding
    # cut every 64 characters is the same text as 48-byte pieces encoded one by one.
    text = base64.b64encode(data).decode("ascii")
    lines = [_ARMOR_BEGIN]
    lines += [text[start : start + _ARMOR_COLUMNS] for start in range(0, len(text), _ARMOR_COLUMNS)]
    lines.append(_ARMOR_END)
    return "\n".join(lines) + "\n"


def _dearmor_canonical(armored: str) -> bytes:
    """Decode ARMORED if it is exactly the canonical armor of its content: lines of 64
    characters and a last one of 1 to 64, padded base64 with zero trailing bits, nothing
    else (no CRLF, blank line, whitespace or comment). Checked on the text itself: every
    bulk read does this, and encoding the content again to compare costs twice as much."""
    begin, end = _ARMOR_BEGIN + "\n", _ARMOR_END + "\n"
    if not (armored.isascii() and armored.startswith(begin) and armored.endswith(end)):
        raise IntegrityError(_NOT_CANONICAL)
    middle = armored[len(begin) : len(armored) - len(end)]
    text = middle.replace("\n", "")
    columns = _ARMOR_COLUMNS
    # A newline after every 64 characters and after the last line, and nowhere else.
    if (
        not text
        or len(middle) != len(text) + -(-len(text) // columns)
        or middle[columns :: columns + 1].strip("\n")
        or not middle.endswith("\n")
    ):
        raise IntegrityError(_NOT_CANONICAL)
    try:
        data = binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        raise IntegrityError(_NOT_CANONICAL) from None
    # Trailing bits can only hide in the last group: it must be what its bytes encode to.
    last = len(data) % 3 or 3
    if not data or binascii.b2a_base64(data[-last:], newline=False) != text[-4:].encode():
        raise IntegrityError(_NOT_CANONICAL)
    return data


def _dearmor_lenient(data: bytes) -> bytes:
    """Decode armor the way the age specification lets readers accept it.

    Whitespace-only lines before and after the block and CRLF line ends are allowed;
    everything else is strict: the exact label, no headers, 64-column lines with only
    the last one shorter and non-empty, canonical padded base64, nothing after the end.
    """
    lines = data.split(b"\n")
    skipped = 0
    index = 0
    while index < len(lines) and not lines[index].strip(_ARMOR_WHITESPACE):
        skipped += len(lines[index]) + 1
        index += 1
    if skipped > _ARMOR_MAX_WHITESPACE:
        raise ArmorFailure("too much whitespace before the armor")

    def line_at(i: int) -> bytes:
        if i >= len(lines):
            raise ArmorFailure("armor ends before its end line")
        line = lines[i]
        return line[:-1] if line.endswith(b"\r") else line

    if line_at(index) != _ARMOR_BEGIN.encode():
        raise ArmorFailure("armor does not start with the age begin line")
    index += 1
    chunks: list[bytes] = []
    while True:
        line = line_at(index)
        index += 1
        if line == _ARMOR_END.encode():
            break
        if len(line) > _ARMOR_COLUMNS:
            raise ArmorFailure("armor line longer than 64 columns")
        if chunks and len(chunks[-1]) < _ARMOR_COLUMNS:
            raise ArmorFailure("armor line after a short line")
        if not line:
            raise ArmorFailure("empty line inside the armor")
        chunks.append(line)
    # Padding anywhere but at the very end fails the canonical re-encoding check.
    decoded = _b64_padded(b"".join(chunks))
    if decoded is None:
        raise ArmorFailure("armor is not canonical base64")
    rest = b"\n".join(lines[index:])
    if rest.strip(_ARMOR_WHITESPACE):
        raise ArmorFailure("data after the armor end line")
    if len(rest) > _ARMOR_MAX_WHITESPACE:
        raise ArmorFailure("too much whitespace after the armor")
    return decoded


@dataclass(frozen=True)
class _Stanza:
    tag: str
    args: tuple[str, ...]
    body: bytes


# 32 bytes in canonical unpadded base64: 43 characters, the last with its two low bits 0.
_B64_32 = rb"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]"
# The X25519 stanzas that open a header cmgit writes: each a share and a one-line body.
_X25519_STANZAS_RE = re.compile(
    rb"age-encryption\.org/v1\n((?:-> X25519 " + _B64_32 + rb"\n" + _B64_32 + rb"\n)+)"
)
_X25519_STANZA_BYTES = len(b"-> X25519 \n\n") + 2 * 43


def _header_stanzas(data: bytes) -> tuple[int, tuple[_Stanza, ...]]:
    """The recipient stanzas of DATA's age header: how many well-formed X25519 stanzas
    open it, found by one regular expression (every bulk read checks a header, and those
    are all but rage's filler stanza), and the others, parsed by `_parse_header`."""
    leading = _X25519_STANZAS_RE.match(data)
    if leading is None:
        return 0, _parse_header(data)[0]
    count = len(leading.group(1)) // _X25519_STANZA_BYTES
    return count, _parse_header(data, leading.end(), count)[0]


def _parse_header(data: bytes, start: int = 0, before: int = 0) -> tuple[tuple[_Stanza, ...], int]:
    """Parse the age v1 header of DATA: its stanzas and where the payload starts; from
    START on, if given, where ``before`` stanzas have already been read.

    Follows the ABNF of the age specification, including canonical base64 and the
    rule that a stanza body ends with a line shorter than 64 columns.
    """

    def next_line(pos: int) -> tuple[bytes, int]:
        end = data.find(b"\n", pos)
        if end < 0:
            raise HeaderFailure("age header is truncated")
        return data[pos:end], end + 1

    pos = start
    if not start:
        if not data.startswith(_VERSION_PREFIX):
            raise HeaderFailure("not an age message")
        line, pos = next_line(0)
        if line != _VERSION_LINE:
            raise HeaderFailure("unsupported age format version")
    stanzas: list[_Stanza] = []
    while True:
        line, pos = next_line(pos)
        if line.startswith(_STANZA_PREFIX):
            arg_text = line[len(_STANZA_PREFIX) :]
            if not _STANZA_ARGS_RE.fullmatch(arg_text):
                raise HeaderFailure("malformed recipient stanza line")
            body_lines: list[bytes] = []
            while True:
                body_line, pos = next_line(pos)
                if not _BODY_LINE_RE.fullmatch(body_line):
                    raise HeaderFailure("malformed recipient stanza body")
                body_lines.append(body_line)
                if len(body_line) < _BODY_COLUMNS:
                    break
            body = _b64_raw(b"".join(body_lines))
            if body is None:
                raise HeaderFailure("recipient stanza body is not canonical base64")
            tag, *args = arg_text.decode("ascii").split(" ")
            stanza = _Stanza(tag=tag, args=tuple(args), body=body)
            _check_stanza_shape(stanza)
            stanzas.append(stanza)
        elif line.startswith(_MAC_PREFIX):
            match = _MAC_LINE_RE.fullmatch(line)
            if not match or _b64_raw(match.group(1)) is None:
                raise HeaderFailure("malformed header MAC line")
            break
        else:
            raise HeaderFailure("unexpected line in the age header")
    if not stanzas and not before:
        raise HeaderFailure("age header has no recipient stanza")
    if len(data) - pos < _NONCE_BYTES:
        raise HeaderFailure("age payload nonce is missing")
    return tuple(stanzas), pos


def _check_stanza_shape(stanza: _Stanza) -> None:
    # The specification makes these rejections mandatory for an X25519 identity; doing
    # them here too means a malformed stanza is a header failure whoever reads it.
    if stanza.tag == _X25519_TAG:
        if len(stanza.args) != 1:
            raise HeaderFailure("X25519 stanza must have exactly one argument")
        share = _b64_raw(stanza.args[0].encode("ascii"))
        if share is None or len(share) != 32:
            raise HeaderFailure("X25519 stanza share is not 32 bytes of canonical base64")
        if len(stanza.body) != 32:
            raise HeaderFailure("X25519 stanza body is not 32 bytes")


def _is_grease(stanza: _Stanza) -> bool:
    return (
        _GREASE_TAG_RE.fullmatch(stanza.tag) is not None
        and len(stanza.args) <= _GREASE_MAX_ARGS
        and all(_GREASE_ARG_RE.fullmatch(arg) for arg in stanza.args)
        and len(stanza.body) <= _GREASE_MAX_BODY
    )


# --------------------------------------------------------------------------------------
# The policy layer: seal, inspect, open
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """What `inspect` learned about a sealed block without any key."""

    # One entry per recipient stanza; after inspect() every entry is "X25519".
    stanza_types: tuple[str, ...]
    # rage's filler stanza (0 or 1), which is no recipient and not counted.
    grease_stanzas: int = 0

    @property
    def stanza_count(self) -> int:
        return len(self.stanza_types)


def _shown_tag(tag: str) -> str:
    # A stanza tag is attacker-chosen printable ASCII of any length: quote a bounded
    # prefix of it, and nothing of the stanza's arguments or body.
    return tag if len(tag) <= 32 else tag[:32] + "..."


# The last block inspected and what came of it: a record is inspected when loaded and
# again, by the same string object, when opened; the second time costs nothing.
_last_inspected: tuple[str, tuple[Header, bytes]] | None = None


def _inspect(armored: str) -> tuple[Header, bytes]:
    global _last_inspected
    if _last_inspected is not None and _last_inspected[0] is armored:
        return _last_inspected[1]
    result = _inspect_anew(armored)
    _last_inspected = (armored, result)
    return result


def _inspect_anew(armored: str) -> tuple[Header, bytes]:
    if len(armored) > MAX_SEALED_BYTES:
        raise TooLarge(f"sealed block is larger than {MAX_SEALED_BYTES // (1024 * 1024)} MiB")
    data = _dearmor_canonical(armored)
    return _header_policy(data, "sealed block"), data


def _header_policy(data: bytes, what: str) -> Header:
    """The stanza policy of everything sealed that cmgit reads, applied to the binary age
    message DATA: a well-formed v1 header, X25519 stanzas only (rage's filler stanza
    tolerated last), at most MAX_STANZAS. WHAT names the thing in messages."""
    try:
        leading, stanzas = _header_stanzas(data)
    except HeaderFailure as exc:
        raise IntegrityError(f"{what} has a malformed age header: {exc.message}") from None
    total = leading + len(stanzas)
    if total > MAX_STANZAS:
        raise IntegrityError(f"{what} has more than {MAX_STANZAS} recipient stanzas")
    types = [_X25519_TAG] * leading
    grease = 0
    for position, stanza in enumerate(stanzas, start=leading):
        if stanza.tag == _X25519_TAG:
            types.append(stanza.tag)
        elif position == total - 1 and _is_grease(stanza):
            grease += 1
        else:
            raise IntegrityError(
                f"{what} has a recipient stanza of type {_shown_tag(stanza.tag)!r};"
                " only X25519 recipients are allowed"
            )
    if not types:
        raise IntegrityError(f"{what} has no X25519 recipient stanza")
    return Header(stanza_types=tuple(types), grease_stanzas=grease)


def inspect(armored: str) -> Header:
    """Check a sealed block without decrypting it: size, canonical armor, header, policy.

    Raises TooLarge or IntegrityError; runs before any key touches the block.
    """
    return _inspect(armored)[0]


def seal(plaintext: bytes, recipients: Sequence[str]) -> str:
    """Encrypt PLAINTEXT to the X25519 RECIPIENTS as a canonical armored age message."""
    unique = _unique_recipients(recipients, "a sealed block")
    # Armor alone makes the block 4/3 of the plaintext: refuse early what cannot fit.
    if len(plaintext) > MAX_SEALED_BYTES * 3 // 4:
        raise TooLarge(_TOO_LARGE_TO_SEAL)
    armored: str = pyrage.encrypt(
        plaintext, [x25519.Recipient.from_str(r) for r in unique], armored=True
    ).decode("ascii")
    if len(armored) > MAX_SEALED_BYTES:
        raise TooLarge(_TOO_LARGE_TO_SEAL)
    # Never write what cmgit itself would refuse to read back (for instance after a
    # pyrage upgrade changes its output): check the block as a reader would.
    _check_own_output(lambda: inspect(armored), len(unique))
    return armored


def _unique_recipients(recipients: Sequence[str], what: str) -> list[str]:
    unique = list(dict.fromkeys(check_recipient(r) for r in recipients))
    if not unique:
        raise UsageError(f"{what} needs at least one recipient")
    return unique


def _check_own_output(inspector: Callable[[], Header], recipients: int) -> None:
    try:
        header = inspector()
    except IntegrityError as exc:
        raise CmgitError(
            f"the age library produced a sealed block cmgit cannot verify ({exc.message})"
        ) from None
    if header.stanza_count != recipients:
        raise CmgitError("the age library produced an unexpected number of recipient stanzas")


def seal_binary(plaintext: bytes, recipients: Sequence[str]) -> bytes:
    """Encrypt PLAINTEXT to the X25519 RECIPIENTS as a binary age file that
    `inspect_binary` accepts: record format 2 keeps each sealed entry and each wrapped
    case key as a file of its own, where armor would only add a third to the size."""
    unique = _unique_recipients(recipients, "a sealed file")
    if len(plaintext) > MAX_SEALED_BYTES:
        raise TooLarge(_TOO_LARGE_TO_SEAL)
    sealed: bytes = pyrage.encrypt(plaintext, [x25519.Recipient.from_str(r) for r in unique])
    if len(sealed) > MAX_SEALED_BYTES:
        raise TooLarge(_TOO_LARGE_TO_SEAL)
    _check_own_output(lambda: inspect_binary(sealed), len(unique))
    return sealed


def inspect_binary(data: bytes) -> Header:
    """Check a binary age file without decrypting it: size, header, stanza policy (the
    same as `inspect`: X25519 recipients only). Armored input is refused: a format-2
    file has one encoding. Raises TooLarge or IntegrityError before any key is used."""
    if len(data) > MAX_SEALED_BYTES:
        raise TooLarge(f"sealed file is larger than {MAX_SEALED_BYTES // (1024 * 1024)} MiB")
    if _looks_armored(data[: _ARMOR_MAX_WHITESPACE + len(_ARMOR_BEGIN)]):
        raise IntegrityError(
            "sealed file is armored; a binary age file was expected",
            hint="store the file as `age` writes it without -a",
        )
    return _header_policy(data, "sealed file")


def open_binary(data: bytes, identities: Sequence[Identity]) -> bytes:
    """Decrypt a binary age file in memory after `inspect_binary` accepted it.

    NotARecipient when no identity opens it; IntegrityError for any damage. Either all
    of the plaintext is returned or none of it.
    """
    inspect_binary(data)
    return _decrypt_checked(data, identities, "sealed file")


def seal_file(plaintext: bytes, recipients: Sequence[str]) -> bytes:
    """Encrypt PLAINTEXT to the X25519 RECIPIENTS as a binary age file, for what leaves the
    repository (an export, a disclosure): the stock `age` tool opens it. No size limit
    and no check of its own output, unlike `seal_binary`: cmgit never reads an export
    back, and an export of many cases may be larger than any sealed entry."""
    unique = _unique_recipients(recipients, "a sealed file")
    sealed: bytes = pyrage.encrypt(plaintext, [x25519.Recipient.from_str(r) for r in unique])
    return sealed


def is_age_file(data: bytes) -> bool:
    """Whether DATA starts as an age message does, binary or armored."""
    return data.startswith(b"age-encryption.org/") or _looks_armored(data[:4096])


def open_sealed(armored: str, identities: Sequence[Identity]) -> bytes:
    """Decrypt a sealed block in memory after `inspect` accepted it.

    NotARecipient when no identity opens it; IntegrityError for any damage. Either all
    of the plaintext is returned or none of it.
    """
    _, data = _inspect(armored)
    return _decrypt_checked(data, identities, "sealed block")


def _decrypt_checked(data: bytes, identities: Sequence[Identity], what: str) -> bytes:
    """Decrypt the binary age message DATA, which the policy has accepted, in memory."""
    if not identities:
        raise NoIdentity(f"no identity was given to open the {what}")
    damaged = f"{what} is damaged or was tampered with"
    try:
        plaintext: bytes = pyrage.decrypt(data, [identity.key for identity in identities])
    except pyrage.DecryptError as exc:
        if _classify(str(exc)) is NoMatch:
            raise NotARecipient(f"this identity is not a recipient of the {what}") from None
        raise IntegrityError(damaged) from None
    except Exception:
        raise IntegrityError(damaged) from None
    except BaseException as exc:
        if _is_rust_panic(exc):
            raise IntegrityError(damaged) from None
        raise
    return plaintext


# --------------------------------------------------------------------------------------
# The adapter layer: any age message, no stanza policy
# --------------------------------------------------------------------------------------


def _looks_armored(data: bytes) -> bool:
    return data.lstrip(_ARMOR_WHITESPACE).startswith(b"-----BEGIN")


def decrypt_message(
    data: bytes,
    identities: Sequence[Identity] = (),
    passphrases: Sequence[str] = (),
    *,
    armored: bool | None = None,
) -> bytes:
    """Decrypt any age message in memory, armored or binary, with no stanza policy.

    ARMORED says whether DATA is armored; None guesses from its first line. Raises an
    AgeFailure subclass naming the stage that failed; returns all plaintext or none.
    """
    if armored is None:
        armored = _looks_armored(data)
    binary = _dearmor_lenient(data) if armored else data
    stanzas, _ = _parse_header(binary)
    try:
        scrypt = [s for s in stanzas if s.tag == _SCRYPT_TAG]
        if passphrases and scrypt:
            return _decrypt_passphrase(binary, scrypt, passphrases)
        result: bytes = pyrage.decrypt(binary, [identity.key for identity in identities])
        return result
    except pyrage.DecryptError as exc:
        message = str(exc)
        raise _classify(message)(message.splitlines()[0] if message else "failed") from None
    except AgeFailure:
        raise
    except Exception as exc:
        raise AgeFailure(f"age library failed: {type(exc).__name__}") from None
    except BaseException as exc:
        if _is_rust_panic(exc):
            raise AgeFailure("age library panicked") from None
        raise


def _decrypt_passphrase(binary: bytes, scrypt: list[_Stanza], passphrases: Sequence[str]) -> bytes:
    for stanza in scrypt:
        # Bound the cost before pyrage spends it (see MAX_SCRYPT_WORK_FACTOR). A work
        # factor that is not canonical decimal is left to pyrage, which refuses it as a
        # header failure. Length first: int() of a long digit string is slow, and a
        # canonical work factor within the limit has one or two digits.
        factor = stanza.args[1] if len(stanza.args) == 2 else ""
        if _CANONICAL_DECIMAL_RE.fullmatch(factor) and (
            len(factor) > 2 or int(factor) > MAX_SCRYPT_WORK_FACTOR
        ):
            raise HeaderFailure("scrypt work factor is above the limit")
    for secret in passphrases:
        try:
            plaintext: bytes = age_passphrase.decrypt(binary, secret)
        except pyrage.DecryptError as exc:
            if _classify(str(exc)) is NoMatch:
                continue
            raise
        return plaintext
    raise NoMatch("no passphrase unwraps the scrypt stanza")


# --------------------------------------------------------------------------------------
# The Cipher seam
# --------------------------------------------------------------------------------------


class Cipher(Protocol):
    """What the store needs from encryption: `Repository.open(..., cipher=...)` takes any
    object with these two methods. `AgeCipher` is the only one. The store still checks
    each sealed block's age header with `inspect` before opening it, so a substitute must
    write age messages; the tests use `AgeCipher` with real keys made for each test."""

    def seal(self, plaintext: bytes, recipients: Sequence[str]) -> str: ...

    def open(self, armored: str, identities: Sequence[Identity]) -> bytes: ...


class AgeCipher:
    """The real Cipher: age through pyrage, with the policy checks of this module."""

    def seal(self, plaintext: bytes, recipients: Sequence[str]) -> str:
        return seal(plaintext, recipients)

    def open(self, armored: str, identities: Sequence[Identity]) -> bytes:
        return open_sealed(armored, identities)
