"""Seed the demo region, deterministically from a seed.

Real members (populations, income groups, capitals, time zones) and real cities; facilities,
GTINs and regulatory decisions are generated but plausible: strong national regulators decide
for themselves, smaller ones rely on a neighbour or recognise WHO prequalification/EUL, and a
few products are refused somewhere, so eligibility differs between members.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

from rich.progress import Progress
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from healthmesh.accounts.access import Role
from healthmesh.accounts.models import User
from healthmesh.accounts.security import hash_password
from healthmesh.demo.catalogue import CATALOGUE, CatalogueItem
from healthmesh.demo.geography import CITIES, MEMBERS, RESERVE_DEPOTS, City, Member
from healthmesh.registry.codes import make_gtin
from healthmesh.registry.enums import (
    AuthorisationStatus,
    FacilityKind,
    IncomeGroup,
    ProductCategory,
    StorageCondition,
    WhoListing,
)
from healthmesh.registry.models import (
    Authorisation,
    Facility,
    Jurisdiction,
    JurisdictionBloc,
    Product,
    RecognitionAgreement,
)

DEMO_PASSWORD = "healthmesh-demo-2026"  # noqa: S105 - printed for the demo on purpose
GS1_EXAMPLE_PREFIX = "0614141"  # the company prefix GS1 uses in its own examples
TARGET_FACILITIES = 400

#: Members whose regulator decides on its own; others rely or recognise (see module docstring).
STRONG_REGULATORS = ("SGP", "THA", "MYS", "IDN", "PHL", "VNM")
RELIANCE = {"BRN": "SGP", "LAO": "THA", "KHM": "THA"}
WHO_RECOGNISERS = ("KHM", "LAO", "MMR", "TLS", "BRN")
MINISTRY = {
    "THA": "Ministry of Public Health",
    "SGP": "Ministry of Health Singapore",
    "VNM": "Ministry of Health of Viet Nam",
}


@dataclass(frozen=True)
class SeedSummary:
    jurisdictions: int
    facilities: int
    products: int
    authorisations: int
    recognitions: int
    users: int


def is_seeded(factory: sessionmaker[Session]) -> bool:
    with factory() as db:
        return bool(db.scalar(select(func.count()).select_from(Jurisdiction)))


def demo_logins(factory: sessionmaker[Session]) -> list[tuple[str, str, str]]:
    with factory() as db:
        users = db.scalars(select(User).order_by(User.role, User.username)).all()
        return [
            (user.username, user.role.value, user.facility_code or user.jurisdiction_iso3 or "region")
            for user in users
        ]


def _facility_quota() -> dict[str, int]:
    """Facilities per member, by the square root of population (small members still get a few)."""
    roots = {member.iso3: math.sqrt(member.population) for member in MEMBERS}
    total = sum(roots.values())
    budget = TARGET_FACILITIES - len(RESERVE_DEPOTS) - len(MEMBERS)
    return {iso3: max(6, round(budget * root / total)) for iso3, root in roots.items()}


def _weighted_cities(rng: random.Random, cities: tuple[City, ...], count: int) -> Iterator[City]:
    ordered = sorted(cities, key=lambda city: -city.weight)
    for index in range(count):
        yield ordered[index] if index < len(ordered) else rng.choices(ordered, [c.weight for c in ordered])[0]


def _jitter(rng: random.Random, value: float, spread: float = 0.08) -> float:
    return round(value + rng.uniform(-spread, spread), 5)


def _seed_jurisdictions(db: Session) -> dict[str, Jurisdiction]:
    out = {}
    for member in MEMBERS:
        jurisdiction = Jurisdiction(
            iso3=member.iso3,
            name=member.name,
            income_group=IncomeGroup(member.income_group),
            population=member.population,
            data_protection_regime=member.data_protection_regime,
            time_zones=list(member.time_zones),
            capital=member.capital,
            bloc_rows=[JurisdictionBloc(bloc=bloc) for bloc in member.blocs],
        )
        db.add(jurisdiction)
        out[member.iso3] = jurisdiction
    db.flush()
    return out


def _facility_kind(rng: random.Random, index: int) -> FacilityKind:
    if index == 0:
        return FacilityKind.HOSPITAL
    if index == 1:
        return FacilityKind.LABORATORY
    return rng.choices(
        [FacilityKind.HOSPITAL, FacilityKind.PRIMARY_CARE, FacilityKind.LABORATORY], [45, 40, 15]
    )[0]


def _facility_name(kind: FacilityKind, city: City, serial: int) -> str:
    if kind is FacilityKind.HOSPITAL:
        return f"{city.name} General Hospital" if serial == 1 else f"{city.name} Hospital No. {serial}"
    if kind is FacilityKind.LABORATORY:
        return f"{city.name} Public Health Laboratory" + ("" if serial == 1 else f" {serial}")
    return f"{city.name} Health Centre {serial}"


def _new_facility(
    rng: random.Random,
    member: Member,
    jurisdiction: Jurisdiction,
    kind: FacilityKind,
    city: City,
    serial: int,
    code: str,
) -> Facility:
    rich = member.income_group in ("high", "upper_middle")
    hospital = kind is FacilityKind.HOSPITAL
    return Facility(
        code=code,
        jurisdiction=jurisdiction,
        kind=kind,
        name=_facility_name(kind, city, serial),
        latitude=_jitter(rng, city.lat),
        longitude=_jitter(rng, city.lon),
        time_zone=city.time_zone,
        parent_organisation=MINISTRY.get(member.iso3, f"Ministry of Health, {member.name}"),
        cold_chain_2_8=kind is not FacilityKind.PRIMARY_CARE or rng.random() < 0.7,
        cold_chain_minus20=(hospital or kind is FacilityKind.LABORATORY)
        and rng.random() < (0.7 if rich else 0.35),
        cold_chain_minus70=(hospital or kind is FacilityKind.LABORATORY)
        and rng.random() < (0.35 if rich else 0.1),
        icu_beds=rng.randint(4, 60) if hospital and rng.random() < 0.8 else 0,
        oxygen_plant=hospital and rng.random() < (0.6 if rich else 0.3),
        lab_biosafety_level=(3 if rng.random() < 0.3 else 2) if kind is FacilityKind.LABORATORY else None,
    )


def _seed_facilities(db: Session, rng: random.Random, jurisdictions: dict[str, Jurisdiction]) -> int:
    quota = _facility_quota()
    count = 0
    for member in MEMBERS:
        jurisdiction = jurisdictions[member.iso3]
        capital_zone = member.time_zones[0]
        db.add(
            Facility(
                code=f"{member.iso3}-NW-0001",
                jurisdiction=jurisdiction,
                kind=FacilityKind.NATIONAL_WAREHOUSE,
                name=f"{member.name} Central Medical Store",
                latitude=_jitter(rng, member.capital_lat, 0.05),
                longitude=_jitter(rng, member.capital_lon, 0.05),
                time_zone=capital_zone,
                parent_organisation=MINISTRY.get(member.iso3, f"Ministry of Health, {member.name}"),
                cold_chain_2_8=True,
                cold_chain_minus20=True,
                cold_chain_minus70=member.income_group in ("high", "upper_middle"),
            )
        )
        count += 1
        serials: dict[tuple[str, FacilityKind], int] = {}
        for index, city in enumerate(_weighted_cities(rng, CITIES[member.iso3], quota[member.iso3])):
            kind = _facility_kind(rng, index)
            serials[(city.name, kind)] = serials.get((city.name, kind), 0) + 1
            code = f"{member.iso3}-{kind.value[:2].upper()}-{index + 1:04d}"
            db.add(_new_facility(rng, member, jurisdiction, kind, city, serials[(city.name, kind)], code))
            count += 1
    for depot in RESERVE_DEPOTS:
        db.add(
            Facility(
                code=depot.code,
                jurisdiction=jurisdictions[depot.iso3],
                kind=FacilityKind.REGIONAL_RESERVE_DEPOT,
                name=depot.name,
                latitude=depot.lat,
                longitude=depot.lon,
                time_zone=depot.time_zone,
                parent_organisation=depot.operator,
                cold_chain_2_8=True,
                cold_chain_minus20=True,
            )
        )
        count += 1
    db.flush()
    return count


def _seed_products(db: Session) -> dict[str, tuple[Product, CatalogueItem]]:
    out = {}
    for item in CATALOGUE:
        product = Product(
            code=item.code,
            gtin=make_gtin(GS1_EXAMPLE_PREFIX, item.gtin_seq),
            name=item.name,
            category=ProductCategory(item.category),
            unit_of_issue=item.unit_of_issue,
            pack_size=item.pack_size,
            storage_condition=StorageCondition(item.storage_condition),
            min_temp_c=item.min_temp_c,
            max_temp_c=item.max_temp_c,
            excursion_tolerance_minutes=item.excursion_tolerance_minutes,
            shelf_life_days=item.shelf_life_days,
            is_discrete_equipment=item.is_discrete_equipment,
            who_listing=WhoListing(item.who_listing) if item.who_listing else None,
        )
        db.add(product)
        out[item.code] = (product, item)
    db.flush()
    return out


def _decisions(
    rng: random.Random, iso3: str, item: CatalogueItem
) -> list[tuple[AuthorisationStatus, str, str | None, date, date | None]]:
    """(status, pathway, relied-on authority, from, to) decisions of one member on one product."""
    covid_specific = item.category in ("vaccine", "medicine", "diagnostics") and rng.random() < 0.5
    start = date(2020 + rng.randint(0, 2), rng.randint(1, 12), 1)
    if iso3 in STRONG_REGULATORS:
        roll = rng.random()
        if roll < 0.05:
            return [(AuthorisationStatus.NOT_AUTHORISED, "application refused", None, start, None)]
        if roll < 0.12:
            return []  # never applied for: no decision
        if covid_specific:
            return [
                (
                    AuthorisationStatus.EMERGENCY_USE,
                    "emergency use authorisation",
                    None,
                    start,
                    date(2023, 12, 31),
                ),
                (
                    AuthorisationStatus.AUTHORISED,
                    "full marketing authorisation",
                    None,
                    date(2024, 1, 1),
                    None,
                ),
            ]
        return [(AuthorisationStatus.AUTHORISED, "full marketing authorisation", None, start, None)]
    if iso3 in RELIANCE and rng.random() < 0.6:
        reference = RELIANCE[iso3]
        return [
            (AuthorisationStatus.RELIANCE, f"abridged review relying on {reference}", reference, start, None)
        ]
    if rng.random() < 0.04:
        return [(AuthorisationStatus.NOT_AUTHORISED, "not registered for import", None, start, None)]
    return []


def _seed_regulatory(
    db: Session,
    rng: random.Random,
    jurisdictions: dict[str, Jurisdiction],
    products: dict[str, tuple[Product, CatalogueItem]],
) -> tuple[int, int]:
    authorisations = 0
    for iso3, jurisdiction in jurisdictions.items():
        for product, item in products.values():
            for status, pathway, relied_on, start, end in _decisions(rng, iso3, item):
                db.add(
                    Authorisation(
                        product=product,
                        jurisdiction=jurisdiction,
                        status=status,
                        pathway=pathway,
                        relied_on_authority=relied_on,
                        valid_from=start,
                        valid_to=end,
                        reference=f"{iso3}-{item.code}-{start.year}",
                    )
                )
                authorisations += 1
    recognitions = 0
    agreements: list[tuple[str, str, list[str], str]] = [
        (iso3, authority, [], "accepts WHO listing for procurement and import")
        for iso3 in WHO_RECOGNISERS
        for authority in ("WHO-PQ", "WHO-EUL")
    ]
    agreements += [(iso3, ref, [], "reliance partner") for iso3, ref in RELIANCE.items()]
    agreements += [
        ("TLS", "IDN", ["ppe", "consumable", "diagnostics"], "cross-border procurement arrangement"),
        ("MMR", "THA", ["ppe", "consumable"], "border health cooperation"),
    ]
    for iso3, authority, categories, note in agreements:
        db.add(
            RecognitionAgreement(
                jurisdiction=jurisdictions[iso3],
                recognised_authority=authority,
                categories=categories,
                valid_from=date(2020, 3, 1),
                note=note,
            )
        )
        recognitions += 1
    db.flush()
    return authorisations, recognitions


def _seed_users(db: Session, jurisdictions: dict[str, Jurisdiction]) -> int:
    password_hash = hash_password(DEMO_PASSWORD)
    users = [
        User(username="admin", full_name="Platform Administrator", role=Role.ADMIN),
        User(
            username="coordinator", full_name="Regional Coordination Centre", role=Role.REGIONAL_COORDINATOR
        ),
        User(username="auditor", full_name="Regional Audit Office", role=Role.AUDITOR),
        User(username="researcher", full_name="Regional Research Network", role=Role.RESEARCHER),
    ]
    for iso3, jurisdiction in jurisdictions.items():
        users.append(
            User(
                username=f"fp.{iso3.lower()}",
                full_name=f"National focal point, {jurisdiction.name}",
                role=Role.NATIONAL_FOCAL_POINT,
                jurisdiction_id=jurisdiction.id,
            )
        )
    for iso3 in ("THA", "PHL"):
        hospital = db.scalar(
            select(Facility)
            .where(Facility.jurisdiction_id == jurisdictions[iso3].id, Facility.kind == FacilityKind.HOSPITAL)
            .order_by(Facility.code)
        )
        assert hospital is not None
        users.append(
            User(
                username=f"manager.{iso3.lower()}",
                full_name=f"Pharmacy manager, {hospital.name}",
                role=Role.FACILITY_MANAGER,
                jurisdiction_id=hospital.jurisdiction_id,
                facility_id=hospital.id,
            )
        )
        users.append(
            User(
                username=f"clinician.{iso3.lower()}",
                full_name=f"ICU physician, {hospital.name}",
                role=Role.CLINICIAN,
                jurisdiction_id=hospital.jurisdiction_id,
                facility_id=hospital.id,
            )
        )
    for user in users:
        # One hash for the shared demo password keeps seeding fast; each real account gets its own salt.
        user.password_hash = password_hash
        db.add(user)
    db.flush()
    return len(users)


def seed_demo(db: Session, *, seed: int = 2026, progress: Progress | None = None) -> SeedSummary:
    """Add the demo region to an empty database (the caller's unit of work commits)."""
    rng = random.Random(seed)
    steps = ("members", "facilities", "products", "regulatory decisions", "users")
    task = progress.add_task("seeding demo region", total=len(steps)) if progress else None

    def advance(step: str) -> None:
        if progress is not None and task is not None:
            progress.update(task, advance=1, description=f"seeded {step}")

    jurisdictions = _seed_jurisdictions(db)
    advance(steps[0])
    facilities = _seed_facilities(db, rng, jurisdictions)
    advance(steps[1])
    products = _seed_products(db)
    advance(steps[2])
    authorisations, recognitions = _seed_regulatory(db, rng, jurisdictions, products)
    advance(steps[3])
    users = _seed_users(db, jurisdictions)
    advance(steps[4])
    return SeedSummary(len(jurisdictions), facilities, len(products), authorisations, recognitions, users)
