"""SSH commit signatures, made and checked in-process (the SSHSIG format git uses).

git's own check of an SSH signature answers "signed by someone in the allowed list", and
accepts a commit signed by one allowed person under another's name. cmgit compares the
signing key itself with the key registered for the commit's actor instead, so it only
needs this module to say which key made a valid signature.

Keys are Ed25519 (`ssh-keygen -t ed25519`). Signatures use the namespace "git" and
SHA-512, as `git commit -S` with gpg.format=ssh makes them, so plain git verifies them.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import struct
from pathlib import Path
from typing import TYPE_CHECKING

# cryptography is imported where it is used: most commands sign or verify nothing, and
# importing it costs more than the rest of their start.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

from .errors import NoIdentity, UsageError

MAGIC = b"SSHSIG"
NAMESPACE = b"git"
HASH = b"sha512"
KEY_TYPE = b"ssh-ed25519"
BEGIN = "-----BEGIN SSH SIGNATURE-----"
END = "-----END SSH SIGNATURE-----"
MAX_KEY_FILE = 64 * 1024


class BadSignature(Exception):
    """The signature is malformed, not Ed25519, or does not match the data."""


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _read_string(blob: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 4 > len(blob):
        raise BadSignature("truncated signature")
    (size,) = struct.unpack(">I", blob[pos : pos + 4])
    end = pos + 4 + size
    if end > len(blob):
        raise BadSignature("truncated signature")
    return blob[pos + 4 : end], end


def public_key_text(key: Ed25519PublicKey) -> str:
    return _key_text(key.public_bytes_raw())


def _key_text(raw: bytes) -> str:
    """The OpenSSH text of a raw Ed25519 public key."""
    blob = _string(KEY_TYPE) + _string(raw)
    return f"{KEY_TYPE.decode()} {base64.b64encode(blob).decode('ascii')}"


def check_public_key(text: str) -> str:
    """``ssh-ed25519 AAAA...`` (a trailing comment is dropped), or UsageError."""
    parts = text.strip().split()
    if len(parts) < 2 or parts[0] != KEY_TYPE.decode():
        raise UsageError("signing key must be an ssh-ed25519 public key")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_ssh_public_key(f"{parts[0]} {parts[1]}".encode())
    except (ValueError, TypeError):
        raise UsageError("signing key is not a valid ssh-ed25519 public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError("signing key must be an ssh-ed25519 public key")
    return public_key_text(key)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An unencrypted OpenSSH Ed25519 private key file, private to its owner."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not hang the command
    except OSError:
        raise NoIdentity("cannot read the signing key", hint="check CMGIT_SIGNING_KEY") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_KEY_FILE:
        os.close(fd)  # checked before fdopen, which refuses a folder with its own error
        raise NoIdentity("signing key is not a key file", hint="check CMGIT_SIGNING_KEY")
    with os.fdopen(fd, "rb") as handle:
        if info.st_mode & 0o077:
            raise NoIdentity("signing key file is readable by others", hint="run chmod 600 on it")
        data = handle.read()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    seed = _ed25519_seed(data)
    if seed is not None:
        return Ed25519PrivateKey.from_private_bytes(seed)
    # Anything else (another kind of key, a passphrase) is judged by the library's loader.
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_ssh_private_key(data, password=None)
    except (ValueError, TypeError):
        raise NoIdentity(
            "signing key cannot be loaded (passphrase-protected keys are not supported)",
            hint="use an unencrypted ed25519 key",
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise NoIdentity("signing key must be an ed25519 key", hint="ssh-keygen -t ed25519")
    return key


_PRIVATE_BEGIN = b"-----BEGIN OPENSSH PRIVATE KEY-----"
_PRIVATE_END = b"-----END OPENSSH PRIVATE KEY-----"
_KEY_MAGIC = b"openssh-key-v1\0"


def _ed25519_seed(data: bytes) -> bytes | None:
    """The 32-byte seed of an unencrypted OpenSSH Ed25519 private key file, or None for
    anything else. Read here because the library's loader costs a signing command a tenth
    of its time to import; the seed is used only if it gives the public key the file names.
    """
    lines = data.strip().splitlines()
    if len(lines) < 3 or lines[0] != _PRIVATE_BEGIN or lines[-1] != _PRIVATE_END:
        return None
    try:
        blob = base64.b64decode(b"".join(lines[1:-1]), validate=True)
        if not blob.startswith(_KEY_MAGIC):
            return None
        cipher, pos = _read_string(blob, len(_KEY_MAGIC))
        kdf, pos = _read_string(blob, pos)
        _, pos = _read_string(blob, pos)
        if (cipher, kdf, blob[pos : pos + 4]) != (b"none", b"none", struct.pack(">I", 1)):
            return None
        public_blob, pos = _read_string(blob, pos + 4)
        private, pos = _read_string(blob, pos)
        key_type, at = _read_string(private, 8)  # after the two check numbers
        public, at = _read_string(private, at)
        secret, at = _read_string(private, at)
        _, at = _read_string(private, at)  # the comment
    except (ValueError, BadSignature):
        return None
    padding = private[at:]
    if (
        pos != len(blob)
        or len(private) % 8
        or padding != bytes(range(1, len(padding) + 1))
        or key_type != KEY_TYPE
        or private[:4] != private[4:8]
        or len(public) != 32
        or secret[32:] != public
        or public_blob != _string(KEY_TYPE) + _string(public)
    ):
        return None
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    seed = secret[:32]
    return (
        seed
        if Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw() == public
        else None
    )


def generate_key(path: Path) -> str:
    """A new Ed25519 signing key in OpenSSH format (mode 0600); returns its public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return public_key_text(key.public_key())


def _signed_data(message: bytes) -> bytes:
    digest = hashlib.sha512(message).digest()
    return MAGIC + _string(NAMESPACE) + _string(b"") + _string(HASH) + _string(digest)


def sign(message: bytes, key: Ed25519PrivateKey) -> str:
    """An armored SSHSIG signature of ``message`` (namespace git, SHA-512)."""
    public = key.public_key().public_bytes_raw()
    signature = key.sign(_signed_data(message))
    blob = (
        MAGIC
        + struct.pack(">I", 1)
        + _string(_string(KEY_TYPE) + _string(public))
        + _string(NAMESPACE)
        + _string(b"")
        + _string(HASH)
        + _string(_string(KEY_TYPE) + _string(signature))
    )
    return _armor(blob)


def _armor(blob: bytes) -> str:
    """The text of a signature, as `ssh-keygen -Y sign` writes it."""
    text = base64.b64encode(blob).decode("ascii")
    lines = [text[i : i + 70] for i in range(0, len(text), 70)]
    return "\n".join([BEGIN, *lines, END])


def verify(message: bytes, armored: str) -> str:
    """The public key (``ssh-ed25519 AAAA...``) whose valid signature ``armored`` is."""
    lines = armored.strip().splitlines()
    if len(lines) < 3 or lines[0] != BEGIN or lines[-1] != END:
        raise BadSignature("not an SSH signature")
    try:
        blob = base64.b64decode("".join(lines[1:-1]), validate=True)
    except ValueError:
        raise BadSignature("not an SSH signature") from None
    if not blob.startswith(MAGIC) or blob[6:10] != struct.pack(">I", 1):
        raise BadSignature("not an SSH signature")
    public_blob, pos = _read_string(blob, 10)
    namespace, pos = _read_string(blob, pos)
    reserved, pos = _read_string(blob, pos)
    hash_name, pos = _read_string(blob, pos)
    signature_blob, pos = _read_string(blob, pos)
    if pos != len(blob) or namespace != NAMESPACE or hash_name != HASH:
        raise BadSignature("not a git commit signature")
    key_type, at = _read_string(public_blob, 0)
    raw_key, at = _read_string(public_blob, at)
    sig_type, sat = _read_string(signature_blob, 0)
    raw_sig, sat = _read_string(signature_blob, sat)
    if key_type != KEY_TYPE or sig_type != KEY_TYPE or len(raw_key) != 32:
        raise BadSignature("only ed25519 signatures are accepted")
    # A signature is kept forever with its commit: bytes no check reads (the reserved
    # field, anything after a part, another wrapping of the text) could carry anything.
    if reserved or at != len(public_blob) or sat != len(signature_blob):
        raise BadSignature("signature carries data a signature never has")
    if armored.strip() != _armor(blob):
        raise BadSignature("signature text is not in the form ssh-keygen writes")
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(raw_key).verify(raw_sig, _signed_data(message))
    except InvalidSignature:
        raise BadSignature("signature does not match") from None
    return _key_text(raw_key)
