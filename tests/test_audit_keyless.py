"""Audit recomputes, without any key, every guard whose named check reads only open
fields, the day, the configuration and the caseloads (guards.KEYLESS): a transition
listed as passing one that fails is flagged, however the audit runs."""

from __future__ import annotations

from cmgit import demo, trail

from .conftest import Programme
from .test_audit import audit, forge
from .test_trail import register_over_the_limit, replaced, trailers_of

Trailers = list[tuple[str, str]]


def take_back(programme: Programme) -> tuple[dict[str, bytes | None], str, Trailers, str]:
    """The last commit's files (its record and any sealed entry), subject, trailers and
    actor; the commit itself undone, and with it any audit that verified it."""
    paths = programme.git("show", "--name-only", "--format=", "HEAD").split()
    files = {
        path: (programme.root / path).read_bytes() if (programme.root / path).exists() else None
        for path in paths
    }
    subject = programme.git("log", "-1", "--format=%s").strip()
    trailers = trailers_of(programme)
    programme.git("reset", "-q", "--hard", "HEAD~1")
    (programme.root / ".git" / "cmgit" / "audit-verified").unlink(missing_ok=True)
    return files, subject, trailers, dict(trailers)["Cmgit-Actor"]


def test_a_caseload_listed_within_the_limit_that_was_over_it_is_flagged(
    programme: Programme,
) -> None:
    case_id, day = register_over_the_limit(programme)
    override = "language_or_culture: the only one who speaks the language"
    result = programme.cli(
        "move", case_id, "registered", "--override-caseload", override, as_="sv-north", today=day
    )
    assert result.exit_code == 0, result.output
    files, subject, trailers, actor = take_back(programme)
    assert audit(programme)[0] == 0  # verified up to the parent: the next run starts there
    parent = programme.git("rev-parse", "HEAD").strip()
    listed = replaced(trailers, "G03c overridden language_or_culture", "G03c pass")
    forged = forge(programme, files, subject, listed, actor)

    summary = programme.repo().workflow.guards["G03c"].summary
    move = dict(trailers)["Cmgit-Transition"]
    detail = f"{case_id}: {move} without G03c ({summary})"
    expected = [{"commit": forged, "rule": "guard", "detail": detail}]
    code, incremental = audit(programme)
    assert (code, incremental["since"], incremental["checked"]) == (6, parent, 1)
    assert incremental["violations"] == expected
    code, full = audit(programme, "--full")
    assert (code, full["since"]) == (6, None)
    assert full["violations"] == expected


def test_a_reopening_after_the_retention_period_is_flagged(programme: Programme) -> None:
    journey = programme.journey(days_before=demo.DURATION["reopened"] + 10)
    demo.walk(journey, "archived")
    closed = journey.day
    journey.wait(40)  # more than a month after closing; the programme keeps cases longer
    journey.reopen()
    case_id = journey.case_id
    assert audit(programme)[0] == 0
    files, subject, trailers, actor = take_back(programme)
    assert (trail.GUARD, "G35 pass") in trailers
    # Under a retention of one month, the same reopening lists G35 as passed: forged.
    result = programme.cli("settings", "set", "retention_period_months", "1", as_="pm-001")
    assert result.exit_code == 0, result.output
    forged = forge(programme, files, subject, trailers, actor)
    assert dict(trailers)["Cmgit-Date"] > closed.isoformat()

    summary = programme.repo().workflow.guards["G35"].summary
    code, report = audit(programme)
    assert code == 6
    assert report["violations"] == [
        {"commit": forged, "rule": "guard", "detail": f"{case_id}: T25 without G35 ({summary})"}
    ]


def test_an_honest_history_audits_the_same_step_by_step_and_in_full(
    programme: Programme,
) -> None:
    """A reopening, registrations up to the limit, and an override on a move and on a
    reassignment, audited after each step (each run from the last verified commit) and
    then in full."""
    programme.walk("reopened", worker="cw-north-2")
    runs = [audit(programme)]
    case_id, day = register_over_the_limit(programme)
    runs.append(audit(programme))
    moved = programme.cli(
        "move", case_id, "registered", "--override-caseload", "emergency", as_="sv-north", today=day
    )
    assert moved.exit_code == 0, moved.output
    runs.append(audit(programme))
    # cw-north-2 holds the reopened case: at the limit too.
    assigned = programme.cli(
        "assign",
        case_id,
        "cw-north-2",
        "--reason",
        "caseload_balancing",
        "--override-caseload",
        "continuity_of_care",
        as_="sv-north",
        today=day,
    )
    assert assigned.exit_code == 0, assigned.output
    assert (trail.GUARD, "G03c overridden continuity_of_care") in trailers_of(programme)
    runs.append(audit(programme))
    assert [code for code, _ in runs] == [0, 0, 0, 0]
    assert all(report["since"] is not None for _, report in runs[1:])
    code, full = audit(programme, "--full")
    assert (code, full["violations"], full["since"]) == (0, [], None)
    steps = [row for _, report in runs for row in report["decisions"]]
    assert [row["commit"] for row in full["decisions"]][-len(steps) :] == [
        row["commit"] for row in steps
    ]
