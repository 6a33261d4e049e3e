"""A round's eligibility windows are decided only on the days an authorisation or a recognition
agreement starts or lapses. Checked against deciding every day of the horizon, on random
validity dates that open and close windows inside it."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest
from sqlalchemy.orm import Session

from healthmesh.allocation import builder
from healthmesh.allocation.snapshot import EligibilityJSON, WindowJSON
from healthmesh.registry import eligibility as rules
from healthmesh.registry import service as registry
from healthmesh.registry.enums import AuthorisationStatus
from healthmesh.registry.models import Authorisation, RecognitionAgreement
from tests.conftest import Region

DAY = date(2026, 12, 1)
STATUSES = list(AuthorisationStatus)


def day_by_day(db: Session, pairs: set[tuple[str, str]], day: date, region: Region) -> list[EligibilityJSON]:
    """The oracle: every day of the horizon decided on its own."""
    recognitions = registry.recognition_records(db)
    out = []
    for code, member in sorted(pairs):
        product = region.products[code]
        records = registry.authorisation_records(db, product.id)
        decisions = [
            rules.decide(
                product_code=code,
                category=product.category.value,
                who_listing=product.who_listing,
                jurisdiction=member,
                day=day + timedelta(days=offset),
                authorisations=records,
                recognitions=recognitions,
            )
            for offset in range(builder.ELIGIBILITY_HORIZON_DAYS + 1)
        ]
        windows: list[WindowJSON] = []
        for offset, decision in enumerate(decisions):
            when = day + timedelta(days=offset)
            if decision.allowed and (offset == 0 or not decisions[offset - 1].allowed):
                windows.append(WindowJSON(start=when, end=None))
            if not decision.allowed and offset > 0 and decisions[offset - 1].allowed:
                windows[-1] = WindowJSON(start=windows[-1].start, end=when - timedelta(days=1))
        basis = next((d.explanation for d in decisions if d.allowed), decisions[0].explanation)
        out.append(EligibilityJSON(product=code, member=member, windows=windows, basis=basis))
    return out


def _random_interval(rng: random.Random) -> tuple[date, date | None]:
    start = DAY + timedelta(days=rng.randint(-20, 70))
    end = None if rng.random() < 0.3 else start + timedelta(days=rng.randint(0, 40))
    return start, end


@pytest.mark.parametrize("seed", range(6))
def test_windows_match_deciding_every_day(db: Session, region: Region, seed: int) -> None:
    rng = random.Random(seed)
    members = list(region.members.values())
    taken: set[tuple[object, ...]] = set()  # one record per (product or authority, member, start)
    for _ in range(8):
        start, end = _random_interval(rng)
        product, member = rng.choice(list(region.products.values())), rng.choice(members)
        if (product.code, member.iso3, start) in taken:
            continue
        taken.add((product.code, member.iso3, start))
        db.add(
            Authorisation(
                product=product,
                jurisdiction=member,
                status=rng.choice(STATUSES),
                pathway="test",
                relied_on_authority=rng.choice([None, "THA", "SGP"]),
                valid_from=start,
                valid_to=end,
            )
        )
    for _ in range(3):
        start, end = _random_interval(rng)
        member, authority = rng.choice(members), rng.choice(["THA", "SGP", "WHO-EUL", "WHO-PQ"])
        if (authority, member.iso3, start) in taken:
            continue
        taken.add((authority, member.iso3, start))
        db.add(
            RecognitionAgreement(
                jurisdiction=member,
                recognised_authority=authority,
                categories=rng.choice([[], ["vaccine"], ["biomedical_equipment", "diagnostics"]]),
                valid_from=start,
                valid_to=end,
            )
        )
    db.flush()
    pairs = {(code, iso3) for code in region.products for iso3 in region.members}
    windows = builder.eligibility_windows(db, pairs, DAY)
    assert windows == day_by_day(db, pairs, DAY, region)
    # the random dates did open and close windows inside the horizon, not only all-or-nothing
    assert any(w.windows and (w.windows[0].start > DAY or w.windows[-1].end) for w in windows)
