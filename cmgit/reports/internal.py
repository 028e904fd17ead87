"""The internal version: full counts for the programme managers, the Annex 5 table in
three dimensions and the indicators only the sealed forms hold (concerns, referrals,
BIA and BID, family tracing, the outcome of monitoring).

``sealed_facts`` reads what one case's forms add, keeping no name, date or text of it;
``internal_report`` adds them up with the open figures. The caller opens the records and
seals the result to the programme managers: nothing here touches a key.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..stats import NOT_SET, RISK_LEVELS, to_day
from .figures import GROUPS, OTHER_SEX, SEX_COLUMNS, STATUSES, CaseMonth, Figure
from .month import Month

# Annex 5's rows: the five categories of protection concern and their types (domain E4);
# every other concern is counted under "other".
CATEGORIES: dict[str, tuple[str, ...]] = {
    "child_abuse": ("neglect", "physical_abuse", "sexual_abuse", "emotional_abuse"),
    "child_health": ("abduction", "recruitment", "physical_medical_problem"),
    "psychological_wellbeing": ("special_needs", "psychological_distress", "mental_illness"),
    "unresolved_problem": ("domestic_violence", "poverty", "substance_abuse_child_or_parent"),
    "social_problem": (
        "no_birth_certificate",
        "school_dropout",
        "early_marriage",
        "separation_from_family",
    ),
}
OTHER_CATEGORY = "other"
CATEGORY_OF = {kind: name for name, kinds in CATEGORIES.items() for kind in kinds}
# How a case came in: through another agency or service, or found by the programme.
REFERRED_IN = frozenset(
    {
        "professional_referral_health",
        "professional_referral_education",
        "professional_referral_law_enforcement",
        "immigration_actor",
        "other_agency_referral",
        "transfer_in",
        "internal_other_programme",
    }
)
NO_FTR = "no tracing recorded"
NO_DECISION = "no BID"


@dataclass(frozen=True)
class SealedFacts:
    """What one case's sealed forms add to a month: codes only."""

    concerns: tuple[str, ...] = ()
    # (service type, status) of each referral made in the month
    referrals_in_month: tuple[tuple[str, str], ...] = ()
    # service types the case was referred to by the month's end
    referred_to: tuple[str, ...] = ()
    referred_in: bool = False
    bia_done: bool = False
    bid_decisions: tuple[str, ...] = ()
    ftr_status: str = NO_FTR
    reunified_in_month: bool = False
    monitoring_outcome: str | None = None


def _items(forms: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    value = forms.get(name)
    items = value if isinstance(value, list) else [value]
    return [item for item in items if isinstance(item, Mapping)]


def _by(item: Mapping[str, Any], key: str, month: Month) -> bool:
    """Whether the item's date ``key`` falls on or before the month's end."""
    day = to_day(item.get(key))
    return day is not None and day <= month.last


def _in(item: Mapping[str, Any], key: str, month: Month) -> bool:
    day = to_day(item.get(key))
    return day is not None and month.first <= day <= month.last


def _text(value: Any, default: str = NOT_SET) -> str:
    return value if isinstance(value, str) and value else default


def sealed_facts(forms: Mapping[str, Any], month: Month) -> SealedFacts:
    """The codes one case's forms give the month's report: concerns of the latest
    assessment completed by the month's end (else those found at registration),
    referrals, how the case came in, BIA and BID, family tracing and monitoring."""
    assessed = sorted(
        (a for a in _items(forms, "assessment") if _by(a, "completed_on", month)),
        key=lambda a: str(a.get("completed_on")),
    )
    if assessed:
        concerns = assessed[-1].get("protection_concerns")
    else:
        registration = _items(forms, "registration")
        concerns = registration[0].get("initial_protection_concerns") if registration else None
    referrals = [r for r in _items(forms, "referral") if _by(r, "referred_on", month)]
    identification = _items(forms, "identification")
    source = identification[0].get("identification_source") if identification else None
    ftr = _items(forms, "ftr")
    monitoring = _items(forms, "post_closure_monitoring")
    return SealedFacts(
        concerns=tuple(sorted({c for c in concerns or () if isinstance(c, str)})),
        referrals_in_month=tuple(
            (_text(r.get("service_type")), _text(r.get("status")))
            for r in referrals
            if _in(r, "referred_on", month)
        ),
        referred_to=tuple(sorted({_text(r.get("service_type")) for r in referrals})),
        referred_in=source in REFERRED_IN,
        bia_done=any(_by(b, "conducted_on", month) for b in _items(forms, "bia")),
        bid_decisions=tuple(
            _text(b.get("decision"))
            for b in _items(forms, "bid")
            if _by(b, "panel_date", month) and b.get("decision")
        ),
        ftr_status=_text(ftr[0].get("status"), NO_FTR) if ftr else NO_FTR,
        reunified_in_month=bool(ftr) and _in(ftr[0], "reunified_on", month),
        monitoring_outcome=(
            _text(monitoring[0].get("monitoring_outcome"))
            if monitoring and _in(monitoring[0], "ended_on", month)
            else None
        ),
    )


def _categories(concerns: Iterable[str]) -> set[str]:
    return {CATEGORY_OF.get(c, OTHER_CATEGORY) for c in concerns} or {NOT_SET}


def sealed_figures(cases: Sequence[tuple[CaseMonth, SealedFacts]]) -> list[Figure]:
    """The figures of the sealed forms, over the cases active in the month (referrals
    made and reunifications: in the month)."""
    active = [(c, s) for c, s in cases if c.active]
    sexes = (*SEX_COLUMNS, OTHER_SEX)
    risks = (*RISK_LEVELS, NOT_SET)
    categories = (*CATEGORIES, OTHER_CATEGORY, NOT_SET)
    kinds = (*(k for ks in CATEGORIES.values() for k in ks), OTHER_CATEGORY, NOT_SET)
    annex = [[[0] * len(risks) for _ in sexes] for _ in categories]
    by_kind = [[0] * len(sexes) for _ in kinds]
    for case, facts in active:
        s, r = sexes.index(case.sex), risks.index(case.risk)
        for category in _categories(facts.concerns):
            annex[categories.index(category)][s][r] += 1
        for kind in {k if k in CATEGORY_OF else OTHER_CATEGORY for k in facts.concerns} or {
            NOT_SET
        }:
            by_kind[kinds.index(kind)][s] += 1
    made = Counter(pair for _, f in cases for pair in f.referrals_in_month)
    services = tuple(sorted({service for service, _ in made}))
    states = tuple(sorted({state for _, state in made}))
    referred_to = Counter((service, case.status) for case, f in active for service in f.referred_to)
    targets = tuple(sorted({service for service, _ in referred_to}))
    uasc = [(c, f) for c, f in active if c.group == GROUPS[0]]
    tracing = Counter(f.ftr_status for _, f in uasc)
    decisions = Counter(d for _, f in uasc for d in f.bid_decisions)
    outcomes = Counter(f.monitoring_outcome for _, f in cases if f.monitoring_outcome)

    def own(referred: bool) -> list[int]:
        return [
            sum(bool(f.referred_to) == referred and c.status == s for c, f in active)
            for s in STATUSES
        ]

    def came(referred_in: bool) -> list[int]:
        return [
            sum(f.referred_in == referred_in and c.status == s for c, f in active) for s in STATUSES
        ]

    return [
        Figure(
            "annex5_concern_sex_risk",
            "Annex 5: cases by concern category, sex and risk level",
            ("concern category", "sex", "risk level"),
            (categories, sexes, risks),
            annex,
            note="A case with concerns in several categories counts in each.",
        ),
        Figure(
            "concern_type_by_sex",
            "Cases by protection concern and sex",
            ("protection concern", "sex"),
            (kinds, sexes),
            by_kind,
            note="Concerns of the latest assessment completed by the month's end, else "
            "those recorded at registration; a case counts under each of its concerns.",
        ),
        Figure(
            "referrals_by_service_and_status",
            "Referrals made in the month by service and status",
            ("service type", "status"),
            (services, states),
            [[made[(service, state)] for state in states] for service in services],
        ),
        Figure(
            "referred_to_service",
            "Annex 5: cases by service referred to, closed or pending",
            ("service type", "status at the end of the month"),
            (targets, STATUSES),
            [[referred_to[(t, s)] for s in STATUSES] for t in targets],
            note="Every referral made by the month's end; a case counts under each service.",
        ),
        Figure(
            "own_and_referred",
            "Annex 5: own and referred cases, closed or pending",
            ("cases", "status at the end of the month"),
            (("own (no referral)", "referred to a service"), STATUSES),
            [own(False), own(True)],
        ),
        Figure(
            "direct_and_referred_in",
            "Cases identified directly or referred in, closed or pending",
            ("how the case came in", "status at the end of the month"),
            (("identified by the programme", "referred by another agency"), STATUSES),
            [came(False), came(True)],
        ),
        Figure(
            "bia_bid",
            "Unaccompanied and separated children: BIA and BID",
            ("what",),
            (
                ("with a BIA", "without a BIA", *(f"BID: {d}" for d in sorted(decisions))),
                ("cases",),
            ),
            [
                [sum(f.bia_done for _, f in uasc)],
                [sum(not f.bia_done for _, f in uasc)],
                *([decisions[d]] for d in sorted(decisions)),
            ],
        ),
        Figure(
            "ftr_outcomes",
            "Unaccompanied and separated children by family tracing status",
            ("tracing status",),
            ((*sorted(tracing), "reunified in the month"), ("cases",)),
            [
                *([tracing[t]] for t in sorted(tracing)),
                [sum(f.reunified_in_month for _, f in uasc)],
            ],
        ),
        Figure(
            "monitoring_outcomes",
            "Post-closure monitoring ended in the month, by outcome",
            ("outcome",),
            (tuple(sorted(outcomes)), ("cases",)),
            [[outcomes[o]] for o in sorted(outcomes)],
        ),
    ]


def internal_report(
    month: Month,
    commit: str,
    programme: str,
    active: int,
    figures: Sequence[Figure],
    unreadable: int,
) -> bytes:
    """The internal version as canonical JSON: the same figures, the same bytes."""
    doc = {
        "report": "monthly",
        "version": "internal",
        "month": month.label,
        "programme": programme,
        "commit": commit,
        "active_cases": active,
        "unreadable_cases": unreadable,
        "tables": [f.as_dict() for f in figures],
    }
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()
