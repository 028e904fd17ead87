"""The CmgitError hierarchy and the exit codes of SPEC section 4.

Every failure the product knows about is one of these classes. A message says what
happened, which case (by ID only) and what to do next; it never carries record
content. The command line translates them to exit codes in one place.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

OK = 0
OTHER = 1
USAGE = 2
INVALID_RECORD = 3
REFUSED = 4
ACCESS = 5
REPOSITORY = 6


class CmgitError(Exception):
    """Base of every error cmgit reports to a user."""

    exit_code = OTHER

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        case_id: str | None = None,
        problems: list[str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.case_id = case_id
        # One line each: failing guards, schema paths. Never a value from a record.
        self.problems = problems or []

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep hint, case and problems when an error crosses from a worker process.
        return (_rebuild, (type(self), self.message, self.__dict__))

    def __str__(self) -> str:
        text = self.message
        if self.case_id and self.case_id not in text:
            text = f"{self.case_id}: {text}"
        if self.hint:
            text = f"{text} ({self.hint})"
        return "\n".join([text, *(f"  {p}" for p in self.problems)])


# exit 2: usage


class UsageError(CmgitError):
    """The command was called wrongly."""

    exit_code = USAGE


class BadCaseId(UsageError):
    """A case ID does not match the one case-ID pattern."""


class CaseNotFound(UsageError):
    """No record exists for this case ID."""


class BadStaffId(UsageError):
    """A staff or team ID does not match its pattern."""


class CmgitTooOld(UsageError):
    """The repository names a newer cmgit as the oldest that may write to it."""


# exit 3: invalid record


class InvalidRecord(CmgitError):
    """A record or form could not be parsed, failed its schema or its integrity check."""

    exit_code = INVALID_RECORD


class ParseError(InvalidRecord):
    """Input is not well-formed or uses a YAML feature cmgit refuses."""


class SchemaError(InvalidRecord):
    """A document does not validate against its JSON Schema."""


class IntegrityError(InvalidRecord):
    """A record's sealed part does not match its path, version or open fields."""


class SealedWithoutYou(IntegrityError):
    """The registry names you as a recipient of a record, but no stanza of its sealed
    block opens with your key: it was sealed without you, outside cmgit."""


class TooLarge(InvalidRecord):
    """An input is larger than cmgit accepts; refused before it is parsed or decrypted."""


# exit 4: refused by the workflow


class Refused(CmgitError):
    """The workflow, a role or a scope rule refuses the action."""

    exit_code = REFUSED


# exit 5: key or access


class AccessError(CmgitError):
    """No usable identity, an unknown actor, not a recipient, or decryption failed."""

    exit_code = ACCESS


class NoIdentity(AccessError):
    """No identity file was given or it cannot be used."""


class UnknownActor(AccessError):
    """The identity matches no active staff member, or several."""


class NotARecipient(AccessError):
    """The identity cannot open this sealed block."""


# exit 6: repository state


class RepositoryError(CmgitError):
    """The repository is not in a state where the command can run."""

    exit_code = REPOSITORY


class NotACaseRepository(RepositoryError):
    """The directory is not inside a cmgit case repository."""


class DirtyWorkTree(RepositoryError):
    """What the command touches has uncommitted changes."""


class OperationInProgress(RepositoryError):
    """A merge, rebase or cherry-pick is in progress, or HEAD is detached."""


class RepositoryBusy(RepositoryError):
    """Another cmgit or git process holds the repository lock."""


class GitFailed(RepositoryError):
    """A git command failed."""


def nearest(given: str, valid: Sequence[str]) -> str | None:
    """The valid name nearest to one given, if one is near enough to be a typing slip."""
    near = difflib.get_close_matches(given, valid, n=1, cutoff=0.75)
    return near[0] if near else None


def nearest_hint(given: str, valid: Sequence[str], kind: str) -> str:
    """The hint for an unknown name: the nearest valid one, if one is near, then all of
    them. The name given is not repeated: it may be anything a person typed."""
    near = nearest(given, valid)
    listed = f"{kind}: {', '.join(valid)}"
    return f"did you mean {near}? {listed}" if near else listed


def _rebuild(kind: type[CmgitError], message: str, state: dict[str, Any]) -> CmgitError:
    error = kind.__new__(kind)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error
