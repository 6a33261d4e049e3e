"""REST routes of the registry, CSV import/export, and the eligibility question."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, UploadFile, status
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from healthmesh.accounts.access import Permission, Principal
from healthmesh.errors import InvalidInput
from healthmesh.registry import service, transfer
from healthmesh.registry.enums import (
    AuthorisationStatus,
    FacilityKind,
    IncomeGroup,
    ProductCategory,
    StorageCondition,
)
from healthmesh.registry.schemas import (
    AuthorisationCreate,
    AuthorisationOut,
    Day,
    EligibilityOut,
    FacilityCreate,
    FacilityOut,
    FacilityUpdate,
    JurisdictionCreate,
    JurisdictionOut,
    JurisdictionUpdate,
    ProductCreate,
    ProductOut,
    ProductUpdate,
    RecognitionCreate,
    RecognitionOut,
)
from healthmesh.web.deps import DbSession, Page, require
from healthmesh.web.pagination import PageOut, page_of

router = APIRouter(prefix="/api/v1", tags=["registry"])

Reader = Annotated[Principal, Depends(require(Permission.REGISTRY_READ))]
JurisdictionWriter = Annotated[Principal, Depends(require(Permission.JURISDICTION_WRITE))]
ProductWriter = Annotated[Principal, Depends(require(Permission.PRODUCT_WRITE))]
FacilityWriter = Annotated[Principal, Depends(require(Permission.FACILITY_WRITE))]
RegulatoryWriter = Annotated[Principal, Depends(require(Permission.REGULATORY_WRITE))]
Search = Annotated[str | None, Query(max_length=100, description="Text in the name, or an exact code")]


# --- CSV -----------------------------------------------------------------------------------------


class ImportResult(BaseModel):
    kind: str
    created: int
    updated: int


def _csv_routes(kind: transfer.CsvKind) -> None:
    writer = require(kind.permission)

    @router.get(f"/{kind.name}/export.csv", response_class=PlainTextResponse, name=f"export_{kind.name}")
    def export(db: DbSession, _: Reader) -> PlainTextResponse:
        return PlainTextResponse(transfer.export_csv(db, kind), media_type="text/csv")

    @router.get(f"/{kind.name}/template.csv", response_class=PlainTextResponse, name=f"template_{kind.name}")
    def template(_: Reader) -> PlainTextResponse:
        return PlainTextResponse(transfer.template(kind), media_type="text/csv")

    @router.post(f"/{kind.name}/import", response_model=ImportResult, name=f"import_{kind.name}")
    def import_(
        db: DbSession, file: Annotated[UploadFile, File()], actor: Principal = Depends(writer)
    ) -> ImportResult:
        try:
            text = file.file.read().decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput.on("file", "not UTF-8 text") from None
        report = transfer.import_csv(db, actor, kind, text)
        return ImportResult(kind=report.kind, created=report.created, updated=report.updated)


for _kind in transfer.KINDS.values():
    _csv_routes(_kind)


# --- jurisdictions -------------------------------------------------------------------------------


@router.get("/jurisdictions", response_model=PageOut[JurisdictionOut])
def list_jurisdictions(
    db: DbSession,
    _: Reader,
    page: Page,
    bloc: str | None = None,
    income_group: IncomeGroup | None = None,
    q: Search = None,
) -> PageOut[JurisdictionOut]:
    rows, total = service.list_jurisdictions(
        db, bloc=bloc, income_group=income_group, q=q, limit=page[0], offset=page[1]
    )
    return page_of(JurisdictionOut, rows, total, page)


@router.get("/jurisdictions/{iso3}", response_model=JurisdictionOut)
def get_jurisdiction(iso3: str, db: DbSession, _: Reader) -> JurisdictionOut:
    return JurisdictionOut.model_validate(service.get_jurisdiction(db, iso3))


@router.post("/jurisdictions", response_model=JurisdictionOut, status_code=status.HTTP_201_CREATED)
def create_jurisdiction(data: JurisdictionCreate, db: DbSession, _: JurisdictionWriter) -> JurisdictionOut:
    return JurisdictionOut.model_validate(service.create_jurisdiction(db, data))


@router.patch("/jurisdictions/{iso3}", response_model=JurisdictionOut)
def update_jurisdiction(
    iso3: str, data: JurisdictionUpdate, db: DbSession, _: JurisdictionWriter
) -> JurisdictionOut:
    return JurisdictionOut.model_validate(service.update_jurisdiction(db, iso3, data))


# --- facilities ----------------------------------------------------------------------------------


@router.get("/facilities", response_model=PageOut[FacilityOut])
def list_facilities(
    db: DbSession,
    _: Reader,
    page: Page,
    jurisdiction: str | None = None,
    kind: FacilityKind | None = None,
    capability: Annotated[str | None, Query(description=", ".join(service.CAPABILITIES))] = None,
    active: bool | None = None,
    q: Search = None,
) -> PageOut[FacilityOut]:
    rows, total = service.list_facilities(
        db,
        jurisdiction=jurisdiction,
        kind=kind,
        capability=capability,
        active=active,
        q=q,
        limit=page[0],
        offset=page[1],
    )
    return page_of(FacilityOut, rows, total, page)


@router.get("/facilities/{code}", response_model=FacilityOut)
def get_facility(code: str, db: DbSession, _: Reader) -> FacilityOut:
    return FacilityOut.model_validate(service.get_facility(db, code))


@router.post("/facilities", response_model=FacilityOut, status_code=status.HTTP_201_CREATED)
def create_facility(data: FacilityCreate, db: DbSession, actor: FacilityWriter) -> FacilityOut:
    return FacilityOut.model_validate(service.create_facility(db, actor, data))


@router.patch("/facilities/{code}", response_model=FacilityOut)
def update_facility(code: str, data: FacilityUpdate, db: DbSession, actor: FacilityWriter) -> FacilityOut:
    return FacilityOut.model_validate(service.update_facility(db, actor, code, data))


# --- products ------------------------------------------------------------------------------------


@router.get("/products", response_model=PageOut[ProductOut])
def list_products(
    db: DbSession,
    _: Reader,
    page: Page,
    category: ProductCategory | None = None,
    storage_condition: StorageCondition | None = None,
    gtin: Annotated[str | None, Query(pattern=r"^\d{8,14}$")] = None,
    q: Search = None,
) -> PageOut[ProductOut]:
    rows, total = service.list_products(
        db,
        category=category,
        storage_condition=storage_condition,
        gtin=gtin,
        q=q,
        limit=page[0],
        offset=page[1],
    )
    return page_of(ProductOut, rows, total, page)


@router.get("/products/{code}", response_model=ProductOut)
def get_product(code: str, db: DbSession, _: Reader) -> ProductOut:
    return ProductOut.model_validate(service.get_product(db, code))


@router.post("/products", response_model=ProductOut, status_code=status.HTTP_201_CREATED)
def create_product(data: ProductCreate, db: DbSession, _: ProductWriter) -> ProductOut:
    return ProductOut.model_validate(service.create_product(db, data))


@router.patch("/products/{code}", response_model=ProductOut)
def update_product(code: str, data: ProductUpdate, db: DbSession, _: ProductWriter) -> ProductOut:
    return ProductOut.model_validate(service.update_product(db, code, data))


# --- regulatory ----------------------------------------------------------------------------------


@router.get("/authorisations", response_model=PageOut[AuthorisationOut])
def list_authorisations(
    db: DbSession,
    _: Reader,
    page: Page,
    product: str | None = None,
    jurisdiction: str | None = None,
    status_: Annotated[AuthorisationStatus | None, Query(alias="status")] = None,
    valid_on: Day | None = None,
) -> PageOut[AuthorisationOut]:
    rows, total = service.list_authorisations(
        db,
        product=product,
        jurisdiction=jurisdiction,
        status=status_,
        valid_on=valid_on,
        limit=page[0],
        offset=page[1],
    )
    return page_of(AuthorisationOut, rows, total, page)


@router.put("/authorisations", response_model=AuthorisationOut)
def record_authorisation(
    data: AuthorisationCreate, db: DbSession, actor: RegulatoryWriter
) -> AuthorisationOut:
    """Record a regulator's decision; the same product, member and start date replaces it."""
    return AuthorisationOut.model_validate(service.upsert_authorisation(db, actor, data)[0])


@router.get("/recognitions", response_model=PageOut[RecognitionOut])
def list_recognitions(
    db: DbSession, _: Reader, page: Page, jurisdiction: str | None = None, authority: str | None = None
) -> PageOut[RecognitionOut]:
    rows, total = service.list_recognitions(
        db, jurisdiction=jurisdiction, authority=authority, limit=page[0], offset=page[1]
    )
    return page_of(RecognitionOut, rows, total, page)


@router.put("/recognitions", response_model=RecognitionOut)
def record_recognition(data: RecognitionCreate, db: DbSession, actor: RegulatoryWriter) -> RecognitionOut:
    """Record that a member accepts another authority's decisions; same key replaces it."""
    return RecognitionOut.model_validate(service.upsert_recognition(db, actor, data)[0])


@router.get("/eligibility", response_model=EligibilityOut)
def eligibility(
    db: DbSession,
    _: Reader,
    product: str,
    jurisdiction: str,
    on: Annotated[Day | None, Query(alias="date", description="Defaults to today (UTC)")] = None,
) -> EligibilityOut:
    """May `product` be used in `jurisdiction` on `date`, and on what basis?"""
    day = on or date.today()
    decision = service.check_eligibility(db, product, jurisdiction, day)
    return EligibilityOut(
        product=product,
        jurisdiction=jurisdiction.upper(),
        date=day,
        allowed=decision.allowed,
        basis=decision.basis,
        authority=decision.authority,
        explanation=decision.explanation,
    )
