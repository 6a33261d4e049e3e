"""May product P be used in jurisdiction J on date D, and on what basis?

Pure: takes the relevant authorisations and recognition agreements as plain records. The service
loads them; the allocation engine asks the same question for many pairs at once.

Order of precedence (the rule the region agreed on):
1. The destination's own decision valid on D: authorised, emergency use or reliance allow;
   an explicit "not authorised" refuses, whatever others decided.
2. Otherwise a recognition agreement of the destination valid on D, covering the product's
   category, whose authority (another member's regulator, WHO-PQ or WHO-EUL) has allowed it.
3. Otherwise no basis: not allowed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from healthmesh.registry.enums import WHO_AUTHORITIES, AuthorisationStatus, WhoListing

ALLOWING = frozenset(
    {AuthorisationStatus.AUTHORISED, AuthorisationStatus.EMERGENCY_USE, AuthorisationStatus.RELIANCE}
)


class Basis(StrEnum):
    AUTHORISED = "authorised"
    EMERGENCY_USE = "emergency_use"
    RELIANCE = "reliance"
    RECOGNITION = "recognition"
    REFUSED = "not_authorised"
    NO_BASIS = "no_basis"


@dataclass(frozen=True)
class AuthorisationRecord:
    jurisdiction: str
    status: AuthorisationStatus
    valid_from: date
    valid_to: date | None
    pathway: str = ""
    relied_on_authority: str | None = None

    def valid_on(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)


@dataclass(frozen=True)
class RecognitionRecord:
    jurisdiction: str
    recognised_authority: str
    categories: tuple[str, ...]
    valid_from: date
    valid_to: date | None

    def covers(self, category: str, day: date) -> bool:
        in_force = self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)
        return in_force and (not self.categories or category in self.categories)


@dataclass(frozen=True)
class Eligibility:
    allowed: bool
    basis: Basis
    authority: str | None
    explanation: str


def _own_decision(
    authorisations: Iterable[AuthorisationRecord], jurisdiction: str, day: date
) -> AuthorisationRecord | None:
    """The destination's decision in force on `day`; the most recent one wins if ranges overlap."""
    valid = [a for a in authorisations if a.jurisdiction == jurisdiction and a.valid_on(day)]
    return max(valid, key=lambda a: a.valid_from) if valid else None


def _authority_allows(
    authority: str,
    who_listing: WhoListing | None,
    authorisations: Iterable[AuthorisationRecord],
    day: date,
) -> bool:
    if authority in WHO_AUTHORITIES:
        return who_listing == WHO_AUTHORITIES[authority]
    decision = _own_decision(authorisations, authority, day)
    return decision is not None and decision.status in {
        AuthorisationStatus.AUTHORISED,
        AuthorisationStatus.EMERGENCY_USE,
    }


def decide(
    *,
    product_code: str,
    category: str,
    who_listing: WhoListing | None,
    jurisdiction: str,
    day: date,
    authorisations: Iterable[AuthorisationRecord],
    recognitions: Iterable[RecognitionRecord],
) -> Eligibility:
    """Decide eligibility of one product in one jurisdiction on one day (see module docstring)."""
    authorisations = list(authorisations)
    own = _own_decision(authorisations, jurisdiction, day)
    if own is not None:
        if own.status in ALLOWING:
            basis = Basis(own.status.value)
            how = f" via {own.pathway}" if own.pathway else ""
            return Eligibility(
                True,
                basis,
                own.relied_on_authority or jurisdiction,
                f"{product_code} is {own.status.value.replace('_', ' ')} in {jurisdiction}{how}.",
            )
        return Eligibility(
            False,
            Basis.REFUSED,
            jurisdiction,
            f"{product_code} is not authorised in {jurisdiction} on {day.isoformat()}.",
        )
    for agreement in recognitions:
        if agreement.jurisdiction != jurisdiction or not agreement.covers(category, day):
            continue
        if _authority_allows(agreement.recognised_authority, who_listing, authorisations, day):
            return Eligibility(
                True,
                Basis.RECOGNITION,
                agreement.recognised_authority,
                f"{jurisdiction} recognises the decision of "
                f"{agreement.recognised_authority} on {product_code}.",
            )
    return Eligibility(
        False,
        Basis.NO_BASIS,
        None,
        f"{product_code} has no authorisation in {jurisdiction} and no recognised authority "
        f"has allowed it on {day.isoformat()}.",
    )
