"""Case keys (record format 2), and how each is wrapped to its readers and custodians.

A case key is an age X25519 identity per case; each generation is one more secret key,
and entries are sealed to the newest. The wrapped key is an age identity file whose
first line names the case, sealed twice over: `staff.age` to the case's readers, and one
`recovery.<a>.<b>.age` per k-subset of the recovery custodians.

Why nested k-subsets rather than secret sharing: a recovery file is sealed to the last
custodian of its subset, that to the one before, and so on, so stock `age -d` run once
per custodian peels it, with no cmgit and no new cryptographic dependency, and fewer
than k custodians hold no part of the key at all. The price is C(n, k) files of k
layers per case: C(n, k) * k X25519 operations per wrap (6 for 2 of 3, 30 for 3 of 5),
affordable for the small custodian groups a programme names.

This module holds no state and touches no file: it turns keys into the bytes of the
keyring's files and back. Where those files live is the keyring ref's business.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cmgit import crypto
from cmgit.crypto import Identity
from cmgit.errors import IntegrityError, NoIdentity, NotARecipient, TooLarge, UsageError
from cmgit.ids import check_case_id

__all__ = [
    "STAFF_FILE",
    "CaseKey",
    "Custodian",
    "check_shape",
    "custodians",
    "key_file",
    "new_case_key",
    "parse_key_file",
    "recover",
    "recovery_name",
    "recovery_subsets",
    "rotate",
    "unwrap",
    "wrap",
]

STAFF_FILE = "staff.age"
CUSTODIAN_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")

_KEY_FILE_HEADER = "# cmgit case key "
_GENERATION_LINE = "# generation "
# What generate_identity writes: the Bech32 secret key, upper case, one line.
_SECRET_RE = re.compile(r"AGE-SECRET-KEY-1[02-9ACDEFGHJKLMNPQRSTUVWXYZ]{58}")
# Far above any number of generations a case reaches (one per reader removed).
_MAX_KEY_FILE_BYTES = crypto.MAX_IDENTITY_FILE_BYTES
_SHOWN_NAME = 40
_RESTORE = "the keyring was altered or damaged; restore it from a backup or another clone"


@dataclass(frozen=True)
class CaseKey:
    """The key of one case: every generation's secret, oldest first."""

    case_id: str
    # repr=False: a key in a log or a traceback would open the case.
    secrets: tuple[str, ...] = field(repr=False)

    def __post_init__(self) -> None:
        check_case_id(self.case_id)
        if not self.secrets or len(set(self.secrets)) != len(self.secrets):
            raise UsageError(f"the case key of {self.case_id} has no or repeated generations")
        for secret in self.secrets:
            if not (isinstance(secret, str) and _SECRET_RE.fullmatch(secret)):
                raise UsageError(f"the case key of {self.case_id} holds something not an age key")
            try:
                crypto.parse_identity(secret)  # the checksum
            except NoIdentity:
                raise UsageError(
                    f"the case key of {self.case_id} holds an invalid age key"
                ) from None

    @property
    def recipient(self) -> str:
        """The recipient of the newest generation: what new entries are sealed to."""
        return crypto.parse_identity(self.secrets[-1]).recipient

    def identities(self) -> tuple[Identity, ...]:
        """Every generation as an identity: an entry may be sealed to any of them."""
        return tuple(crypto.parse_identity(secret) for secret in self.secrets)


def new_case_key(case_id: str) -> CaseKey:
    """A fresh case key of one generation."""
    secret, _ = crypto.generate_identity()
    return CaseKey(case_id=case_id, secrets=(secret,))


def rotate(key: CaseKey) -> CaseKey:
    """KEY with one generation more: removing a reader must leave them no key to what
    is written next, while the older generations still open the older entries."""
    secret, _ = crypto.generate_identity()
    return CaseKey(case_id=key.case_id, secrets=(*key.secrets, secret))


def key_file(key: CaseKey) -> bytes:
    """KEY as an age identity file stock `age -i` reads. Its first line binds it to the
    case, so a wrapped key moved to another case's place is refused (`parse_key_file`)."""
    lines = [f"{_KEY_FILE_HEADER}{key.case_id}"]
    for number, secret in enumerate(key.secrets, start=1):
        lines += [f"{_GENERATION_LINE}{number}", secret]
    return ("\n".join(lines) + "\n").encode("ascii")


def parse_key_file(data: bytes, case_id: str) -> CaseKey:
    """The case key in DATA, which must be exactly what `key_file` writes for CASE_ID.

    IntegrityError otherwise; its messages never quote a line (it may hold a secret).
    """
    damaged = IntegrityError(
        f"the wrapped key of {case_id} is not a cmgit case key file",
        hint=_RESTORE,
    )
    if len(data) > _MAX_KEY_FILE_BYTES or not data.isascii() or not data.endswith(b"\n"):
        raise damaged
    first, *rest = data.decode("ascii").removesuffix("\n").split("\n")
    if not first.startswith(_KEY_FILE_HEADER):
        raise damaged
    if first != f"{_KEY_FILE_HEADER}{case_id}":
        raise IntegrityError(
            f"wrapped key belongs to another case, not {case_id}",
            hint=_RESTORE,
        )
    if not rest or len(rest) % 2:
        raise damaged
    secrets = tuple(rest[1::2])
    try:
        key = CaseKey(case_id=case_id, secrets=secrets)
    except UsageError:
        raise damaged from None
    if key_file(key) != data:
        raise damaged
    return key


# --------------------------------------------------------------------------------------
# Custodians and the nested recovery files
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Custodian:
    """A recovery custodian: an id (part of file names) and an age recipient."""

    id: str
    recipient: str

    def __post_init__(self) -> None:
        if not (isinstance(self.id, str) and CUSTODIAN_ID_RE.fullmatch(self.id)):
            raise UsageError(
                "a recovery custodian id is 1-32 characters of a-z, 0-9 and -",
                hint="fix the recovery custodians in the settings",
            )
        crypto.check_recipient(self.recipient)


def recovery_name(subset: Sequence[Custodian]) -> str:
    """The keyring file of one subset: "recovery.<id1>.<id2>.age", ids in settings order."""
    return "recovery." + ".".join(custodian.id for custodian in subset) + ".age"


def recovery_subsets(custodians: Sequence[Custodian], k: int) -> list[tuple[Custodian, ...]]:
    """Every k-subset of CUSTODIANS, in itertools.combinations order. No custodians means
    no recovery files (whatever K); otherwise K must be 1 to n, and ids unique."""
    if not custodians:
        return []
    if len({custodian.id for custodian in custodians}) != len(custodians):
        raise UsageError(
            "two recovery custodians have the same id",
            hint="fix the recovery custodians in the settings",
        )
    if not 1 <= k <= len(custodians):
        raise UsageError(
            f"the recovery threshold must be 1 to {len(custodians)} (the custodians named);"
            f" it is {k}",
            hint="fix the recovery threshold in the settings",
        )
    return list(itertools.combinations(custodians, k))


def wrap(
    key: CaseKey, staff_recipients: Sequence[str], custodians: Sequence[Custodian], k: int
) -> dict[str, bytes]:
    """The keyring files of one case: "staff.age" sealed to STAFF_RECIPIENTS, and per
    k-subset the key file sealed to its last custodian, that to the one before, ...,
    the outermost layer to the first, so custodians peel it in settings order."""
    plaintext = key_file(key)
    files = {STAFF_FILE: crypto.seal_binary(plaintext, staff_recipients)}
    for subset in recovery_subsets(custodians, k):
        layer = plaintext
        for custodian in reversed(subset):
            layer = crypto.seal_binary(layer, [custodian.recipient])
        files[recovery_name(subset)] = layer
    return files


def _file(files: Mapping[str, bytes], name: str, case_id: str) -> bytes:
    try:
        return files[name]
    except KeyError:
        raise IntegrityError(
            f"the keyring has no {name} for {case_id}",
            hint=_RESTORE,
        ) from None


def unwrap(files: Mapping[str, bytes], case_id: str, identities: Sequence[Identity]) -> CaseKey:
    """The case key from "staff.age", as one of the case's readers opens it."""
    try:
        plaintext = crypto.open_binary(_file(files, STAFF_FILE, case_id), identities)
    except NotARecipient:
        raise NotARecipient(
            f"this identity is not among the readers of {case_id}",
            hint="ask a supervisor to check the case's assignment",
        ) from None
    return parse_key_file(plaintext, case_id)


def recover(
    files: Mapping[str, bytes],
    case_id: str,
    custodians: Sequence[Custodian],
    k: int,
    present: Sequence[Identity],
) -> CaseKey:
    """The case key from a recovery file, peeled by k custodians whose identities are
    PRESENT: the first k-subset (in settings order) of which every member is present."""
    subsets = recovery_subsets(custodians, k)
    if not subsets:
        raise NotARecipient(
            "this programme names no recovery custodians", hint="open the case as a reader"
        )
    by_recipient = {identity.recipient: identity for identity in present}
    here = {custodian.id for custodian in custodians if custodian.recipient in by_recipient}
    if len(here) < k:
        raise NotARecipient(
            f"recovery needs the keys of {k} custodians; {len(here)} given",
            hint="bring together the identity files of enough recovery custodians",
        )
    subset = next(s for s in subsets if all(custodian.id in here for custodian in s))
    layer = _file(files, recovery_name(subset), case_id)
    for custodian in subset:
        try:
            layer = crypto.open_binary(layer, [by_recipient[custodian.recipient]])
        except NotARecipient:
            raise IntegrityError(
                f"the recovery file of {case_id} is not sealed to its custodians in order",
                hint=_RESTORE,
            ) from None
    return parse_key_file(layer, case_id)


def _shown(name: str) -> str:
    # A file name comes from a tree anyone may have written: quote a bounded prefix.
    return repr(name if len(name) <= _SHOWN_NAME else name[:_SHOWN_NAME] + "...")


def check_shape(
    files: Mapping[str, bytes], staff_count: int, custodians: Sequence[Custodian], k: int
) -> list[str]:
    """What is wrong with one case's keyring files, found without any key: unexpected
    or missing names, a "staff.age" that is no binary age file with STAFF_COUNT X25519
    stanzas, a recovery file whose outer layer has not exactly one (the inner layers
    need a custodian's key). One short sentence per problem."""
    expected = [STAFF_FILE, *(recovery_name(s) for s in recovery_subsets(custodians, k))]
    problems = [f"unexpected file {_shown(name)}" for name in sorted(files) if name not in expected]
    problems += [f"missing file {name}" for name in expected if name not in files]
    for name in expected:
        if name not in files:
            continue
        wanted = staff_count if name == STAFF_FILE else 1
        try:
            count = crypto.inspect_binary(files[name]).stanza_count
        except (IntegrityError, TooLarge):
            problems.append(f"{name} is not a binary age file of X25519 recipients")
            continue
        if count != wanted:
            problems.append(f"{name} has {count} recipient stanzas, not {wanted}")
    return problems


def custodians(settings: Mapping[str, Any]) -> tuple[list[Custodian], int]:
    """The recovery custodians, in settings order, and how many must come together.

    Each recovery recipient of the settings is a custodian; the threshold is
    ``recovery_threshold``, or two where there are two or more, so that no single
    recovery identity opens a case."""
    recipients = list(settings.get("recovery_recipients") or ())
    people = [Custodian(f"custodian-{n}", r) for n, r in enumerate(recipients, start=1)]
    threshold = int(settings.get("recovery_threshold") or min(2, len(people)))
    return people, threshold
