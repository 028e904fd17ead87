"""The decisions a transition commit records, keylessly (message form 2): who authorised
it and, where another proposed it, who proposed it; on a reassignment the caseworker
before; and every guard of the transition with its result (`Cmgit-Guard: G03c overridden
emergency`), in the workflow's order. Audit reads them back and judges them against the
workflow in force at the commit's parent.

Codes and staff IDs only: the words of an override stay sealed in the record.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .errors import UsageError
from .workflow import OVERRIDDEN, OVERRIDE, PASS, WARN, Transition, Workflow

# The form of message cmgit writes (audit judges each commit by the form it names; the
# first form names none), and the trailer that names it.
MESSAGE_FORM = "2"
FORMAT_TRAILER = "Cmgit-Format"
GUARD = "Cmgit-Guard"
AUTHORISER = "Cmgit-Authoriser"
PROPOSER = "Cmgit-Proposer"  # who proposed what the authoriser authorises
PREVIOUS = "Cmgit-Previous"  # the key caseworker before a reassignment
# What form 2 changes in the trailers of each action: the guards' results replace the
# override and warning trailers of form 1.
ADDED = {
    "move": frozenset({AUTHORISER, PROPOSER, GUARD}),
    "assign": frozenset({AUTHORISER, PREVIOUS, GUARD}),
}
DROPPED = frozenset({"Cmgit-Override", "Cmgit-Warning"})
# The results a guard of each severity may be listed with in a commit.
ALLOWED = {"hard": (PASS,), "warn": (PASS, WARN), OVERRIDE: (PASS, OVERRIDDEN)}
GUARDS_RULE = "guards"
AUTHORITY_RULE = "authoriser"


def override_reason(flow: Workflow, codes: Sequence[str], override: str | None) -> str | None:
    """The reason code an override names, checked against the workflow: the first word
    of ``override`` ("CODE" or "CODE: words"), where the overridable guard among
    ``codes`` lists reasons; None where it lists none or nothing is overridden."""
    if override is None:
        return None
    for code in codes:
        reasons = flow.guards[code].override_reasons
        if not reasons:
            continue
        reason = override.partition(":")[0].strip()
        if reason not in reasons:
            raise UsageError(
                f"--override-caseload starts with a reason code of {code}, one of: "
                + ", ".join(reasons),
                hint=f'the words after it stay sealed: --override-caseload "{reasons[0]}: ..."',
            )
        return reason
    return None


def guard_trailers(results: Sequence[tuple[str, str]], reason: str | None) -> list[tuple[str, str]]:
    """One `Cmgit-Guard` trailer for each guard evaluated, in order."""
    return [
        (
            GUARD,
            f"{code} {result} {reason}" if result == OVERRIDDEN and reason else f"{code} {result}",
        )
        for code, result in results
    ]


def records_decisions(trailers: Mapping[str, list[str]]) -> bool:
    """Whether a commit is a transition whose message form records its decisions."""
    action = trailers.get("Cmgit-Action", [""])[-1]
    return action in ADDED and trailers.get(FORMAT_TRAILER, [""])[-1] not in ("", "1")


def decision(trailers: Mapping[str, list[str]]) -> dict[str, Any]:
    """What a commit's trailers say was decided, for `log` and `audit --json`: only the
    parts it records (a commit of form 1 records none of them)."""
    if not records_decisions(trailers):
        return {}
    shown: dict[str, Any] = {}
    for key, name in ((AUTHORISER, "authoriser"), (PROPOSER, "proposer")):
        if key in trailers:
            shown[name] = trailers[key][-1]
    if PREVIOUS in trailers:
        shown["previous_caseworker"] = trailers[PREVIOUS][-1]
    shown["guards"] = list(trailers.get(GUARD, []))
    return shown


def describe(shown: Mapping[str, Any]) -> str:
    """`decision` in one line, for `cmgit log`: "authoriser sv-1; G20 pass, G25 pass"."""
    people = [
        f"{name.replace('_', ' ')} {shown[name]}"
        for name in ("authoriser", "proposer", "previous_caseworker")
        if name in shown
    ]
    return "; ".join([*people, *([", ".join(shown["guards"])] if shown.get("guards") else [])])


def expected_guards(flow: Workflow, transition: Transition | None, reason: str | None) -> list[str]:
    """The guards a move (or, without a transition, a reassignment) evaluates, in order."""
    if transition is None:
        return list(dict.fromkeys(flow.assignment.guards))
    extra = (transition.reasons or {}).get(reason or "", ())
    return list(dict.fromkeys([*transition.guards, *extra]))


def judge(
    trailers: Mapping[str, list[str]],
    flow: Workflow,
    codes: Sequence[str],
    *,
    actor_id: str,
    actor_role: str,
    authorised: bool,
    previous: str | None = None,
) -> Iterator[tuple[str, str]]:
    """What is wrong with the decisions a form-2 transition commit lists: each guard of
    ``codes`` exactly once, in order, with a result its severity allows and an override
    only by an authoriser, naming a reason the workflow allows; the authoriser named
    exactly where the transition needs one (``authorised``), and that is the actor; the
    caseworker before a reassignment as ``previous``. Yields (rule, detail)."""
    listed = [value.split(" ") for value in trailers.get(GUARD, [])]
    if any(len(parts) not in (2, 3) for parts in listed):
        yield GUARDS_RULE, "a Cmgit-Guard trailer is not CODE RESULT [REASON]"
        return
    named = [parts[0] for parts in listed]
    if named != list(codes):
        missing = [code for code in codes if code not in named]
        yield (
            GUARDS_RULE,
            "the guards listed are not those of the workflow, each once in its order"
            + (f" ({', '.join(missing)} not listed)" if missing else ""),
        )
        return
    for code, result, *reason in listed:
        guard = flow.guards[code]
        if result not in ALLOWED.get(guard.severity, ()) or (reason and result != OVERRIDDEN):
            yield (
                GUARDS_RULE,
                f"{code} listed {' '.join([result, *reason])}: "
                f"a {guard.severity} guard allows no such result",
            )
        elif result == OVERRIDDEN:
            if actor_role not in flow.authorisers:
                yield GUARDS_RULE, f"{code} overridden by a {actor_role}"
            if (reason[0] if reason else None) not in (guard.override_reasons or (None,)):
                yield GUARDS_RULE, f"{code} overridden without a reason the workflow allows"
    authoriser = trailers.get(AUTHORISER, [])
    if authoriser != ([actor_id] if authorised else []):
        yield (
            AUTHORITY_RULE,
            (
                "the authoriser named is not the actor"
                if authorised
                else "an authoriser is named where the transition needs none"
            ),
        )
    proposer = trailers.get(PROPOSER, [])
    if proposer and (not authorised or proposer == [actor_id]):
        yield AUTHORITY_RULE, "a proposer is named where nobody else proposed"
    if trailers.get(PREVIOUS, [None])[-1] != previous:
        yield AUTHORITY_RULE, "the caseworker before the reassignment is not the one named"
