"""Registry use cases: list, read, create, update, import and export; eligibility.

Reference data (members, products, regulatory status) is visible to every signed-in user of the
region; who may change what is decided by permission (route) and scope (here).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any, TypeVar

from sqlalchemy import Select, exists, func, or_, select
from sqlalchemy.orm import Session

from healthmesh.accounts.access import Principal, ScopeKind
from healthmesh.errors import FieldError, InvalidInput, NotFound, PermissionDenied
from healthmesh.ledger import service as transparency
from healthmesh.registry import eligibility
from healthmesh.registry.enums import AuthorisationStatus, FacilityKind, IncomeGroup, ProductCategory
from healthmesh.registry.models import (
    Authorisation,
    Facility,
    Jurisdiction,
    JurisdictionBloc,
    Product,
    RecognitionAgreement,
)
from healthmesh.registry.schemas import (
    AuthorisationCreate,
    FacilityCreate,
    FacilityUpdate,
    JurisdictionCreate,
    JurisdictionUpdate,
    ProductCreate,
    ProductUpdate,
    RecognitionCreate,
)

T = TypeVar("T")


def paginate(db: Session, stmt: Select[T], limit: int, offset: int) -> tuple[list[T], int]:
    total = db.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    return list(db.scalars(stmt.limit(limit).offset(offset)).all()), total


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


# --- jurisdictions -------------------------------------------------------------------------------


def list_jurisdictions(
    db: Session, *, bloc: str | None, income_group: IncomeGroup | None, q: str | None, limit: int, offset: int
) -> tuple[list[Jurisdiction], int]:
    stmt = select(Jurisdiction).order_by(Jurisdiction.iso3)
    if bloc:
        stmt = stmt.where(
            exists().where(
                JurisdictionBloc.jurisdiction_id == Jurisdiction.id, JurisdictionBloc.bloc == bloc.upper()
            )
        )
    if income_group:
        stmt = stmt.where(Jurisdiction.income_group == income_group)
    if q:
        stmt = stmt.where(
            or_(func.lower(Jurisdiction.name).like(_like(q), escape="\\"), Jurisdiction.iso3 == q.upper())
        )
    return paginate(db, stmt, limit, offset)


def jurisdiction_by_iso3(db: Session, iso3: str) -> Jurisdiction | None:
    return db.scalar(select(Jurisdiction).where(Jurisdiction.iso3 == iso3.upper()))


def get_jurisdiction(db: Session, iso3: str) -> Jurisdiction:
    jurisdiction = jurisdiction_by_iso3(db, iso3)
    if jurisdiction is None:
        raise NotFound(f"{iso3} is not a member of the region")
    return jurisdiction


def _require_member(db: Session, iso3: str, field: str = "jurisdiction") -> Jurisdiction:
    jurisdiction = jurisdiction_by_iso3(db, iso3)
    if jurisdiction is None:
        raise InvalidInput.on(field, f"{iso3} is not a member of the region")
    return jurisdiction


def _out_of_scope(message: str) -> PermissionDenied:
    return PermissionDenied(message, [FieldError("jurisdiction", message)])


def _apply(obj: object, values: dict[str, Any]) -> None:
    for name, value in values.items():
        setattr(obj, name, value)


def _set_blocs(jurisdiction: Jurisdiction, blocs: Sequence[str]) -> None:
    wanted = list(dict.fromkeys(blocs))
    jurisdiction.bloc_rows = [row for row in jurisdiction.bloc_rows if row.bloc in wanted]
    have = {row.bloc for row in jurisdiction.bloc_rows}
    jurisdiction.bloc_rows.extend(JurisdictionBloc(bloc=bloc) for bloc in wanted if bloc not in have)


def upsert_jurisdiction(db: Session, data: JurisdictionCreate) -> tuple[Jurisdiction, bool]:
    jurisdiction = jurisdiction_by_iso3(db, data.iso3)
    created = jurisdiction is None
    if jurisdiction is None:
        jurisdiction = Jurisdiction(iso3=data.iso3)
        db.add(jurisdiction)
    _apply(jurisdiction, data.model_dump(exclude={"iso3", "blocs"}))
    _set_blocs(jurisdiction, data.blocs)
    db.flush()
    return jurisdiction, created


def create_jurisdiction(db: Session, data: JurisdictionCreate) -> Jurisdiction:
    if jurisdiction_by_iso3(db, data.iso3) is not None:
        raise InvalidInput.on("iso3", f"{data.iso3} is already a member")
    return upsert_jurisdiction(db, data)[0]


def update_jurisdiction(db: Session, iso3: str, data: JurisdictionUpdate) -> Jurisdiction:
    jurisdiction = get_jurisdiction(db, iso3)
    values = data.model_dump(exclude_unset=True, exclude={"blocs"})
    for name, value in values.items():
        if value is None:
            raise InvalidInput.on(name, "may not be null")
    _apply(jurisdiction, values)
    if data.blocs is not None:
        _set_blocs(jurisdiction, data.blocs)
    db.flush()
    return jurisdiction


# --- facilities ----------------------------------------------------------------------------------


def list_facilities(
    db: Session,
    *,
    jurisdiction: str | None,
    kind: FacilityKind | None,
    capability: str | None,
    active: bool | None,
    q: str | None,
    limit: int,
    offset: int,
) -> tuple[list[Facility], int]:
    stmt = select(Facility).order_by(Facility.code)
    if jurisdiction:
        stmt = stmt.join(Facility.jurisdiction).where(Jurisdiction.iso3 == jurisdiction.upper())
    if kind:
        stmt = stmt.where(Facility.kind == kind)
    if capability:
        stmt = stmt.where(_capability_clause(capability))
    if active is not None:
        stmt = stmt.where(Facility.active.is_(active))
    if q:
        stmt = stmt.where(or_(func.lower(Facility.name).like(_like(q), escape="\\"), Facility.code == q))
    return paginate(db, stmt, limit, offset)


CAPABILITIES = ("cold_chain_2_8", "cold_chain_minus20", "cold_chain_minus70", "oxygen_plant", "icu", "bsl3")


def _capability_clause(capability: str) -> Any:
    if capability == "icu":
        return Facility.icu_beds > 0
    if capability == "bsl3":
        return Facility.lab_biosafety_level >= 3
    if capability in CAPABILITIES:
        return getattr(Facility, capability).is_(True)
    raise InvalidInput.on("capability", f"one of {', '.join(CAPABILITIES)}")


def facility_by_code(db: Session, code: str) -> Facility | None:
    return db.scalar(select(Facility).where(Facility.code == code))


def get_facility(db: Session, code: str) -> Facility:
    facility = facility_by_code(db, code)
    if facility is None:
        raise NotFound(f"no facility {code!r}")
    return facility


def upsert_facility(db: Session, actor: Principal, data: FacilityCreate) -> tuple[Facility, bool]:
    jurisdiction = _require_member(db, data.jurisdiction)
    facility = facility_by_code(db, data.code)
    if facility is None:
        if not actor.covers_jurisdiction(jurisdiction.id):
            raise _out_of_scope(f"you may not register facilities in {jurisdiction.iso3}")
        _check_depot_kind(actor, None, data.kind)
        facility = Facility(code=data.code)
        db.add(facility)
        created = True
    else:
        _check_manages(actor, facility)
        _check_depot_kind(actor, facility.kind, data.kind)
        if facility.jurisdiction_id != jurisdiction.id:
            raise InvalidInput.on("jurisdiction", "a facility does not move between members")
        created = False
    _apply(facility, data.model_dump(exclude={"code", "jurisdiction"}))
    facility.jurisdiction = jurisdiction
    db.flush()
    return facility, created


def _check_manages(actor: Principal, facility: Facility) -> None:
    depot = facility.kind is FacilityKind.REGIONAL_RESERVE_DEPOT
    if not actor.manages_facility(facility.id, facility.jurisdiction_id, regional_depot=depot):
        raise PermissionDenied(f"you may not change facility {facility.code}")


def _check_depot_kind(actor: Principal, before: FacilityKind | None, after: FacilityKind | None) -> None:
    """Only a region-wide role makes a facility a regional reserve depot or unmakes one: the kind
    decides whose stock it holds (the region's or its member's)."""
    depot = FacilityKind.REGIONAL_RESERVE_DEPOT
    if (
        after is not None
        and before != after
        and depot in (before, after)
        and actor.scope is not ScopeKind.REGION
    ):
        raise PermissionDenied(
            "only a region-wide role may make a facility a regional reserve depot or change one"
        )


def create_facility(db: Session, actor: Principal, data: FacilityCreate) -> Facility:
    if facility_by_code(db, data.code) is not None:
        raise InvalidInput.on("code", f"facility {data.code} already exists")
    return upsert_facility(db, actor, data)[0]


def update_facility(db: Session, actor: Principal, code: str, data: FacilityUpdate) -> Facility:
    facility = get_facility(db, code)
    _check_manages(actor, facility)
    values = data.model_dump(exclude_unset=True)
    if "kind" in values:
        _check_depot_kind(actor, facility.kind, values["kind"])
    for name, value in values.items():
        if value is None and name != "lab_biosafety_level":
            raise InvalidInput.on(name, "may not be null")
    _apply(facility, values)
    db.flush()
    return facility


# --- products ------------------------------------------------------------------------------------


def list_products(
    db: Session,
    *,
    category: ProductCategory | None,
    storage_condition: str | None,
    gtin: str | None,
    q: str | None,
    limit: int,
    offset: int,
) -> tuple[list[Product], int]:
    stmt = select(Product).order_by(Product.code)
    if category:
        stmt = stmt.where(Product.category == category)
    if storage_condition:
        stmt = stmt.where(Product.storage_condition == storage_condition)
    if gtin:
        stmt = stmt.where(Product.gtin == gtin.zfill(14))
    if q:
        stmt = stmt.where(or_(func.lower(Product.name).like(_like(q), escape="\\"), Product.code == q))
    return paginate(db, stmt, limit, offset)


def product_by_code(db: Session, code: str) -> Product | None:
    return db.scalar(select(Product).where(Product.code == code))


def get_product(db: Session, code: str) -> Product:
    product = product_by_code(db, code)
    if product is None:
        raise NotFound(f"no product {code!r}")
    return product


def _check_gtin_free(db: Session, gtin: str | None, product_id: int | None) -> None:
    if gtin is None:
        return
    owner = db.scalar(select(Product).where(Product.gtin == gtin))
    if owner is not None and owner.id != product_id:
        raise InvalidInput.on("gtin", f"already used by product {owner.code}")


def upsert_product(db: Session, data: ProductCreate) -> tuple[Product, bool]:
    product = product_by_code(db, data.code)
    created = product is None
    _check_gtin_free(db, data.gtin, product.id if product else None)
    if product is None:
        product = Product(code=data.code)
        db.add(product)
    _apply(product, data.model_dump(exclude={"code"}))
    db.flush()
    return product, created


def create_product(db: Session, data: ProductCreate) -> Product:
    if product_by_code(db, data.code) is not None:
        raise InvalidInput.on("code", f"product {data.code} already exists")
    return upsert_product(db, data)[0]


def update_product(db: Session, code: str, data: ProductUpdate) -> Product:
    product = get_product(db, code)
    values = data.model_dump(exclude_unset=True)
    for name, value in values.items():
        if value is None and name not in {"gtin", "who_listing"}:
            raise InvalidInput.on(name, "may not be null")
    if "gtin" in values:
        _check_gtin_free(db, values["gtin"], product.id)
    low = values.get("min_temp_c", product.min_temp_c)
    high = values.get("max_temp_c", product.max_temp_c)
    if low > high:
        raise InvalidInput.on("min_temp_c", "must not exceed max_temp_c")
    _apply(product, values)
    db.flush()
    return product


# --- regulatory ----------------------------------------------------------------------------------


def list_authorisations(
    db: Session,
    *,
    product: str | None,
    jurisdiction: str | None,
    status: AuthorisationStatus | None,
    valid_on: date | None,
    limit: int,
    offset: int,
) -> tuple[list[Authorisation], int]:
    stmt = select(Authorisation).order_by(Authorisation.id)
    if product:
        stmt = stmt.join(Authorisation.product).where(Product.code == product)
    if jurisdiction:
        stmt = stmt.join(Authorisation.jurisdiction).where(Jurisdiction.iso3 == jurisdiction.upper())
    if status:
        stmt = stmt.where(Authorisation.status == status)
    if valid_on:
        stmt = stmt.where(
            Authorisation.valid_from <= valid_on,
            or_(Authorisation.valid_to.is_(None), Authorisation.valid_to >= valid_on),
        )
    return paginate(db, stmt, limit, offset)


def _require_product(db: Session, code: str) -> Product:
    product = product_by_code(db, code)
    if product is None:
        raise InvalidInput.on("product", f"unknown product {code!r}")
    return product


def _require_authority(db: Session, authority: str, field: str) -> None:
    if authority.startswith("WHO-"):
        return
    _require_member(db, authority, field)


def upsert_authorisation(
    db: Session, actor: Principal, data: AuthorisationCreate
) -> tuple[Authorisation, bool]:
    product = _require_product(db, data.product)
    jurisdiction = _require_member(db, data.jurisdiction)
    if data.relied_on_authority:
        _require_authority(db, data.relied_on_authority, "relied_on_authority")
    if not actor.covers_jurisdiction(jurisdiction.id):
        raise _out_of_scope(f"you may not record regulatory decisions of {jurisdiction.iso3}")
    row = db.scalar(
        select(Authorisation).where(
            Authorisation.product_id == product.id,
            Authorisation.jurisdiction_id == jurisdiction.id,
            Authorisation.valid_from == data.valid_from,
        )
    )
    created = row is None
    if row is None:
        row = Authorisation(product=product, jurisdiction=jurisdiction, valid_from=data.valid_from)
        db.add(row)
    _apply(row, data.model_dump(exclude={"product", "jurisdiction", "valid_from"}))
    db.flush()
    transparency.append(
        db,
        "registry.authorisation_changed",
        {
            "product": product.code,
            "member": jurisdiction.iso3,
            "status": row.status.value,
            "pathway": row.pathway,
            "relied_on_authority": row.relied_on_authority,
            "valid_from": row.valid_from.isoformat(),
            "valid_to": row.valid_to.isoformat() if row.valid_to else None,
            "created": created,
        },
    )
    return row, created


def list_recognitions(
    db: Session, *, jurisdiction: str | None, authority: str | None, limit: int, offset: int
) -> tuple[list[RecognitionAgreement], int]:
    stmt = select(RecognitionAgreement).order_by(RecognitionAgreement.id)
    if jurisdiction:
        stmt = stmt.join(RecognitionAgreement.jurisdiction).where(Jurisdiction.iso3 == jurisdiction.upper())
    if authority:
        stmt = stmt.where(RecognitionAgreement.recognised_authority == authority.upper())
    return paginate(db, stmt, limit, offset)


def upsert_recognition(
    db: Session, actor: Principal, data: RecognitionCreate
) -> tuple[RecognitionAgreement, bool]:
    jurisdiction = _require_member(db, data.jurisdiction)
    _require_authority(db, data.recognised_authority, "recognised_authority")
    if not actor.covers_jurisdiction(jurisdiction.id):
        raise _out_of_scope(f"you may not record recognition agreements of {jurisdiction.iso3}")
    row = db.scalar(
        select(RecognitionAgreement).where(
            RecognitionAgreement.jurisdiction_id == jurisdiction.id,
            RecognitionAgreement.recognised_authority == data.recognised_authority,
            RecognitionAgreement.valid_from == data.valid_from,
        )
    )
    created = row is None
    if row is None:
        row = RecognitionAgreement(
            jurisdiction=jurisdiction,
            recognised_authority=data.recognised_authority,
            valid_from=data.valid_from,
        )
        db.add(row)
    row.valid_to = data.valid_to
    row.categories = [category.value for category in data.categories]
    row.note = data.note
    db.flush()
    transparency.append(
        db,
        "registry.recognition_changed",
        {
            "member": jurisdiction.iso3,
            "recognised_authority": row.recognised_authority,
            "categories": list(row.categories),
            "valid_from": row.valid_from.isoformat(),
            "valid_to": row.valid_to.isoformat() if row.valid_to else None,
            "created": created,
        },
    )
    return row, created


# --- eligibility ---------------------------------------------------------------------------------


def authorisation_records(db: Session, product_id: int) -> list[eligibility.AuthorisationRecord]:
    rows = db.scalars(select(Authorisation).where(Authorisation.product_id == product_id))
    return [
        eligibility.AuthorisationRecord(
            row.jurisdiction.iso3,
            row.status,
            row.valid_from,
            row.valid_to,
            row.pathway,
            row.relied_on_authority,
        )
        for row in rows
    ]


def authorisation_records_by_product(
    db: Session, product_ids: Iterable[int]
) -> dict[int, list[eligibility.AuthorisationRecord]]:
    """`authorisation_records` of many products in one query, by columns (an allocation round at
    continent scale reads 15,000 authorisations of 300 products)."""
    out: dict[int, list[eligibility.AuthorisationRecord]] = {p: [] for p in product_ids}
    rows = db.execute(
        select(
            Authorisation.product_id,
            Jurisdiction.iso3,
            Authorisation.status,
            Authorisation.valid_from,
            Authorisation.valid_to,
            Authorisation.pathway,
            Authorisation.relied_on_authority,
        )
        .join(Jurisdiction, Jurisdiction.id == Authorisation.jurisdiction_id)
        .where(Authorisation.product_id.in_(sorted(out)))
        .order_by(Authorisation.id)
    )
    for product_id, iso3, status, valid_from, valid_to, pathway, relied_on in rows:
        out[product_id].append(
            eligibility.AuthorisationRecord(iso3, status, valid_from, valid_to, pathway, relied_on)
        )
    return out


def recognition_records(
    db: Session, jurisdiction_id: int | None = None
) -> list[eligibility.RecognitionRecord]:
    stmt = select(RecognitionAgreement)
    if jurisdiction_id is not None:
        stmt = stmt.where(RecognitionAgreement.jurisdiction_id == jurisdiction_id)
    return [
        eligibility.RecognitionRecord(
            row.jurisdiction.iso3,
            row.recognised_authority,
            tuple(row.categories),
            row.valid_from,
            row.valid_to,
        )
        for row in db.scalars(stmt)
    ]


def check_eligibility(db: Session, product_code: str, iso3: str, day: date) -> eligibility.Eligibility:
    """May this product be used in this member on this day, and on what basis?"""
    product = _require_product(db, product_code)
    jurisdiction = _require_member(db, iso3)
    return eligibility.decide(
        product_code=product.code,
        category=product.category.value,
        who_listing=product.who_listing,
        jurisdiction=jurisdiction.iso3,
        day=day,
        authorisations=authorisation_records(db, product.id),
        recognitions=recognition_records(db, jurisdiction.id),
    )
