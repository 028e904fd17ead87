"""The named checks declared keyless (guards.KEYLESS), which audit recomputes without a
key, read nothing sealed: each gives the same result on a situation whose sealed forms
are gone, or garbled, as on the whole one. Pure: random situations, no git, no key."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cmgit import guards
from cmgit.guards import Situation

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
CASE = json.loads((SCHEMAS / "case.schema.json").read_text())["properties"]
OPEN = [name for name, spec in CASE.items() if spec.get("x-cmgit") == "open"]
SEALED = [name for name, spec in CASE.items() if spec.get("x-cmgit") == "sealed"]


def _names(node: Any) -> set[str]:
    """Every property name a form schema defines, at any depth."""
    if isinstance(node, dict):
        found = set(node.get("properties", {}))
        return found.union(*(_names(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_names(value) for value in node))
    return set()


# The sealed forms are made of the forms' own field names, so that a check reading one
# meets the shapes it looks for, and of the values the open fields take.
FORM_KEYS = sorted(
    set().union(*(_names(json.loads(p.read_text())) for p in SCHEMAS.glob("forms/*.json")))
)
STAFF = ["cw-1", "cw-2", "cw-3", "sv-1", "pm-1"]
ROLES = ["caseworker", "supervisor", "programme_manager", "coordinator"]
# Codes the checks compare with (states, reasons, outcomes, statuses), as a form has them.
WORDS = ["registered", "closed", "turned_18", "high", "granted", "unaccompanied", "referral"]
WORDS += ["family_reunification", "propose_closure", "achieved", "active", "draft", "child"]
DAYS = st.dates(dt.date(2015, 1, 1), dt.date(2035, 12, 31))
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 40),
    st.sampled_from(STAFF + ROLES + WORDS),
    DAYS.map(dt.date.isoformat),
)
FORMS = st.recursive(
    VALUES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(FORM_KEYS), inner, max_size=6)
    ),
    max_leaves=6,
)
OPEN_FIELDS = st.fixed_dictionaries({name: VALUES for name in OPEN})
SEALED_FORMS = st.fixed_dictionaries({name: FORMS for name in SEALED})
SETTINGS = st.fixed_dictionaries(
    {},
    optional={
        "caseload_limit": st.integers(1, 30),
        "retention_period_months": st.one_of(st.none(), st.integers(1, 120)),
        "closure_notice_days": st.integers(0, 60),
        "vulnerability_criteria": st.lists(st.sampled_from(FORM_KEYS), max_size=3),
    },
)


@st.composite
def situations(draw: st.DrawFn) -> tuple[Situation, Situation, Situation]:
    """A situation three ways: whole; with only its open parts; with other sealed forms
    (and another count of personal fields a move removed, which no commit shows)."""
    record, before = draw(OPEN_FIELDS), draw(OPEN_FIELDS)
    whole = Situation(
        record={**record, **draw(SEALED_FORMS)},
        before={**before, **draw(SEALED_FORMS)},
        actor_id=draw(st.sampled_from(STAFF)),
        actor_role=draw(st.sampled_from(ROLES)),
        today=draw(DAYS),
        settings=draw(SETTINGS),
        active_caseworkers=frozenset(draw(st.lists(st.sampled_from(STAFF)))),
        caseload=draw(st.dictionaries(st.sampled_from(STAFF), st.integers(0, 40))),
        authorisers=frozenset(draw(st.lists(st.sampled_from(ROLES)))),
        reason=draw(st.one_of(st.none(), st.sampled_from(["turned_18", "emergency"]))),
        override=draw(st.one_of(st.none(), st.just("emergency: words"))),
        personal_left=draw(st.integers(0, 3)),
    )
    bare = dataclasses.replace(whole, record=record, before=before, personal_left=0)
    garbled = dataclasses.replace(
        whole,
        record={**record, **draw(SEALED_FORMS)},
        before={**before, **draw(SEALED_FORMS)},
        personal_left=draw(st.integers(0, 3)),
    )
    return whole, bare, garbled


# Each run draws fresh examples (no example database is kept): 60 a run keep the suite
# inside its time budget, and the runs add up.
@settings(max_examples=60, deadline=None)
@given(situations())
def test_a_keyless_check_reads_nothing_sealed(
    three: tuple[Situation, Situation, Situation],
) -> None:
    whole, bare, garbled = three
    for name, version in sorted(guards.KEYLESS):
        check = guards.named_check(name, version)
        assert check is not None, name
        expected = check(whole, {})
        assert check(bare, {}) == expected, name
        assert check(garbled, {}) == expected, name


def test_the_comparison_finds_a_check_that_reads_a_sealed_form() -> None:
    """The same comparison tells a check that reads a sealed form (the closure form's
    authoriser) from a keyless one."""
    open_fields = dict.fromkeys(OPEN)
    whole = Situation(
        record={**open_fields, "closure": {"authorised_by": "sv-2"}},
        before={**open_fields, "caseworker": "cw-1"},
        actor_id="sv-1",
        actor_role="supervisor",
        today=dt.date(2026, 4, 1),
        settings={},
        active_caseworkers=frozenset(),
        caseload={},
        authorisers=frozenset({"supervisor"}),
    )
    bare = dataclasses.replace(whole, record=open_fields)
    assert ("authorised_by_actor", 1) not in guards.KEYLESS
    assert guards.authorised_by_actor(whole, {}) != guards.authorised_by_actor(bare, {})
    assert guards.keyless("caseload_limit") and not guards.keyless("turned_18", 2)
