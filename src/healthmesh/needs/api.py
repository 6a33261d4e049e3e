"""REST routes of needs: raise, edit, submit, endorse, reject, cancel, list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, UploadFile, status
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from healthmesh.accounts.access import Permission, Principal
from healthmesh.errors import InvalidInput
from healthmesh.needs import service, transfer
from healthmesh.needs.schemas import NeedIn, NeedOut, NeedUpdate, RejectIn
from healthmesh.needs.workflow import NeedStatus, Urgency
from healthmesh.registry.schemas import RowId
from healthmesh.web.deps import DbSession, Page, require
from healthmesh.web.pagination import PageOut

router = APIRouter(prefix="/api/v1/needs", tags=["needs"])

NeedReader = Annotated[Principal, Depends(require(Permission.NEED_READ))]
NeedWriter = Annotated[Principal, Depends(require(Permission.NEED_WRITE))]
Endorser = Annotated[Principal, Depends(require(Permission.NEED_ENDORSE))]


@router.post("", response_model=NeedOut, status_code=status.HTTP_201_CREATED)
def create_need(data: NeedIn, db: DbSession, actor: NeedWriter) -> NeedOut:
    """Raise a need (a draft, or submitted at once with `submit: true`)."""
    return service.to_out(service.create(db, actor, data), with_history=True)


class NeedImportResult(BaseModel):
    created: int


@router.post("/import", response_model=NeedImportResult, status_code=status.HTTP_201_CREATED)
def import_needs(db: DbSession, actor: NeedWriter, file: Annotated[UploadFile, File()]) -> NeedImportResult:
    """Import needs from CSV (see the template); any bad line changes nothing."""
    try:
        text = file.file.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput.on("file", "not UTF-8 text") from None
    return NeedImportResult(created=transfer.import_needs(db, actor, text))


@router.get("/template.csv", response_class=PlainTextResponse)
def needs_template(_: NeedReader) -> PlainTextResponse:
    return PlainTextResponse(transfer.template(), media_type="text/csv")


@router.get("", response_model=PageOut[NeedOut])
def list_needs(
    db: DbSession,
    actor: NeedReader,
    page: Page,
    status_: Annotated[list[NeedStatus] | None, Query(alias="status")] = None,
    jurisdiction: str | None = None,
    facility: str | None = None,
    product: str | None = None,
    urgency: Urgency | None = None,
) -> PageOut[NeedOut]:
    rows, total = service.list_needs(
        db,
        actor,
        status=status_,
        jurisdiction=jurisdiction,
        facility=facility,
        product=product,
        urgency=urgency,
        limit=page[0],
        offset=page[1],
    )
    return PageOut[NeedOut](
        items=[service.to_out(n) for n in rows], total=total, limit=page[0], offset=page[1]
    )


@router.get("/{need_id}", response_model=NeedOut)
def get_need(need_id: RowId, db: DbSession, actor: NeedReader) -> NeedOut:
    return service.to_out(service.get(db, actor, need_id), with_history=True)


@router.patch("/{need_id}", response_model=NeedOut)
def update_need(need_id: RowId, data: NeedUpdate, db: DbSession, actor: NeedWriter) -> NeedOut:
    """Edit a draft."""
    return service.to_out(service.update(db, actor, need_id, data), with_history=True)


@router.post("/{need_id}/submit", response_model=NeedOut)
def submit_need(need_id: RowId, db: DbSession, actor: NeedWriter) -> NeedOut:
    return service.to_out(service.submit(db, actor, service.get(db, actor, need_id)), with_history=True)


@router.post("/{need_id}/endorse", response_model=NeedOut)
def endorse_need(need_id: RowId, db: DbSession, actor: Endorser) -> NeedOut:
    """The member's national focal point endorses the need; it opens to regional allocation."""
    return service.to_out(service.endorse(db, actor, service.get(db, actor, need_id)), with_history=True)


@router.post("/{need_id}/reject", response_model=NeedOut)
def reject_need(need_id: RowId, data: RejectIn, db: DbSession, actor: Endorser) -> NeedOut:
    return service.to_out(
        service.reject(db, actor, service.get(db, actor, need_id), data.reason), with_history=True
    )


@router.post("/{need_id}/cancel", response_model=NeedOut)
def cancel_need(need_id: RowId, db: DbSession, actor: NeedWriter) -> NeedOut:
    return service.to_out(service.cancel(db, actor, service.get(db, actor, need_id)), with_history=True)
