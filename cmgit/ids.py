"""Identifiers: case IDs, staff and team IDs, reason codes, and where a case's file lives.

Every ID that reaches a file name, a git argument or a commit message passes one of the
patterns here first, so nothing personal or path-like can slip through (hostile B11-B13).
"""

from __future__ import annotations

import re
from collections.abc import Collection

from .errors import BadCaseId, BadStaffId, UsageError

# Crockford base-32: digits and letters without I, L, O, U.
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

# The one case-ID pattern (SPEC section 1): a programme prefix and 8 Crockford characters.
_PREFIX = "[A-Z]{2,5}"
_CHAR = "[0-9A-HJKMNP-TV-Z]"
CASE_ID_RE = re.compile(rf"{_PREFIX}-{_CHAR}{{8}}")
ENTROPY_BYTES = 5
STAFF_ID_RE = re.compile(r"[a-z][a-z0-9-]{1,31}")
REASON_RE = re.compile(r"[a-z][a-z0-9_]{0,47}")
PREFIX_RE = re.compile(_PREFIX)

RECORDS_DIR = "records"
RECORD_SUFFIX = ".yaml"
# A record file's path, as git lists it: its folder and case ID, the folder being the ID's
# first two characters (`bucket`), so a listing is checked by the expression alone.
RECORD_PATH_PATTERN = (
    rf"{RECORDS_DIR}/(?P<folder>{_CHAR}{{2}})/"
    rf"(?P<case>{_PREFIX}-(?P=folder){_CHAR}{{6}}){re.escape(RECORD_SUFFIX)}"
)


def check_case_id(text: object) -> str:
    """Return ``text`` if it is a well-formed case ID, else raise BadCaseId (exit 2)."""
    if isinstance(text, str) and CASE_ID_RE.fullmatch(text):
        return text
    raise BadCaseId(
        "malformed case ID",
        hint="a case ID is a prefix, a dash and 8 characters, for example CP-7K2M9QX4",
    )


def check_staff_id(text: object, what: str = "staff ID") -> str:
    if isinstance(text, str) and STAFF_ID_RE.fullmatch(text):
        return text
    raise BadStaffId(
        f"malformed {what}",
        hint="use 2-32 lower-case letters, digits and dashes, starting with a letter",
    )


def check_team_id(text: object) -> str:
    return check_staff_id(text, "team ID")


def check_reason(text: object) -> str:
    if isinstance(text, str) and REASON_RE.fullmatch(text):
        return text
    raise UsageError(
        "malformed reason code",
        hint="a reason is a code such as objectives_met; words go in the sealed forms",
    )


def check_prefix(text: object) -> str:
    if isinstance(text, str) and PREFIX_RE.fullmatch(text):
        return text
    raise UsageError("malformed case ID prefix", hint="use 2-5 capital letters, e.g. CP")


def _crockford8(entropy: bytes) -> str:
    """8 Crockford characters from 5 bytes (40 bits) of randomness."""
    if len(entropy) != ENTROPY_BYTES:
        raise ValueError("an ID takes exactly 5 bytes of entropy")
    number = int.from_bytes(entropy, "big")
    return "".join(CROCKFORD[(number >> shift) & 31] for shift in range(35, -1, -5))


def new_case_id(prefix: str, entropy: bytes) -> str:
    """A case ID from 5 bytes (40 bits) of randomness: 8 Crockford characters."""
    return f"{check_prefix(prefix)}-{_crockford8(entropy)}"


def new_item_id(form: str, entropy: bytes) -> str:
    """The id of a new item of a repeated form: the form name and 8 Crockford characters
    from 5 bytes of randomness, so items two offices add to one case never share an id
    (SPEC section 9)."""
    return f"{form}-{_crockford8(entropy)}"


def next_item_id(form: str, taken: Collection[str]) -> str:
    """The sequential id after the ones ``taken`` (``note-3`` after ``note-2``): the form
    cmgit gave items before collision-free ids, still used where a repository's schemas
    do not admit the new form."""
    numbers = [int(n) for t in taken if (n := t.rpartition("-")[2]).isdigit()]
    return f"{form}-{max(numbers, default=0) + 1}"


def record_path(case_id: str) -> str:
    """Repository path of a case's file, fanned out by the first two ID characters.

    Two Crockford characters give 1,024 folders: about 100 files each at 100,000 cases,
    and ``records/`` itself never holds more than ~1,000 entries.
    """
    check_case_id(case_id)
    return f"{RECORDS_DIR}/{bucket(case_id)}/{case_id}{RECORD_SUFFIX}"


def bucket(case_id: str) -> str:
    """The folder under records/ of a well-formed case ID: its first two characters after
    the prefix."""
    return case_id.split("-", 1)[1][:2]


def case_id_from_path(path: str) -> str | None:
    """The case ID a repository path stands for, or None if it is not a record path."""
    parts = path.split("/")
    if len(parts) != 3 or parts[0] != RECORDS_DIR or not parts[2].endswith(RECORD_SUFFIX):
        return None
    case_id = parts[2][: -len(RECORD_SUFFIX)]
    if not CASE_ID_RE.fullmatch(case_id) or bucket(case_id) != parts[1]:
        return None
    return case_id
