"""Need use cases: raise, edit, submit, endorse or reject, cancel; list within scope."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection, Select, func, select
from sqlalchemy.orm import Session, lazyload

from healthmesh.accounts.access import Permission, Principal, ScopeKind
from healthmesh.changes.service import Change, publish
from healthmesh.db import utcnow
from healthmesh.errors import Conflict, FieldError, InvalidInput, NotFound, PermissionDenied
from healthmesh.needs.models import Need, NeedTransition
from healthmesh.needs.schemas import NeedIn, NeedOut, NeedUpdate, TransitionOut
from healthmesh.needs.workflow import (
    IN_PROGRESS,
    OUTSTANDING,
    Action,
    InvalidTransition,
    NeedStatus,
    Urgency,
    next_status,
    status_for_progress,
)
from healthmesh.registry.models import Facility, Jurisdiction, Product
from healthmesh.supply import summary


def to_out(need: Need, with_history: bool = False) -> NeedOut:
    return NeedOut(
        id=need.id,
        jurisdiction=need.jurisdiction.iso3,
        facility=need.facility.code if need.facility else None,
        product=need.product.code,
        quantity=need.quantity,
        urgency=need.urgency,
        needed_by=need.needed_by,
        justification=need.justification,
        population_served=need.population_served,
        status=need.status,
        quantity_allocated=need.quantity_allocated,
        quantity_fulfilled=need.quantity_fulfilled,
        rejection_reason=need.rejection_reason,
        external_id=need.external_id,
        created_at=need.created_at,
        history=[
            TransitionOut(
                from_status=t.from_status,
                to_status=t.to_status,
                by=t.actor.username if t.actor else None,
                at=t.at,
                note=t.note,
            )
            for t in need.history
        ]
        if with_history
        else [],
    )


def _visible(stmt: Select[Need], actor: Principal) -> Select[Need]:
    if actor.scope is ScopeKind.FACILITY:
        return stmt.where(Need.facility_id == actor.facility_id)
    if actor.scope is ScopeKind.JURISDICTION:
        return stmt.where(Need.jurisdiction_id == actor.jurisdiction_id)
    return stmt


def _announce(db: Session, need: Need) -> None:
    publish(
        db,
        [
            Change(
                "need",
                need.jurisdiction_id,
                need.facility_id,
                {
                    "need_id": need.id,
                    "status": need.status.value,
                    "product": need.product.code,
                    "quantity": need.quantity,
                    "quantity_allocated": need.quantity_allocated,
                },
            )
        ],
    )


def transition(db: Session, need: Need, action: Action, actor: Principal | None, note: str = "") -> None:
    """Move a need by `action`, recording who and when; an impossible move is a 409 naming why."""
    try:
        target = next_status(need.status, action)
    except InvalidTransition as exc:
        raise Conflict(str(exc), [FieldError("status", str(exc))]) from None
    _move(db, need, target, actor, note)


def _move(db: Session, need: Need, target: NeedStatus, actor: Principal | None, note: str) -> None:
    """Record the step in the need's history, move it, and announce it on the change feed."""
    db.add(
        NeedTransition(
            need_id=need.id,
            from_status=need.status,
            to_status=target,
            actor_id=actor.user_id if actor and actor.user_id else None,
            note=note,
        )
    )
    need.status = target
    db.flush()
    db.refresh(need, ["history"])
    _announce(db, need)


def follow_progress(db: Session, need: Need, actor: Principal | None, note: str) -> None:
    """Move a need to the status its allocated and fulfilled quantities say (shipments call this),
    recording the step like any other transition."""
    if need.status not in IN_PROGRESS:
        raise Conflict(
            f"need {need.id} is {need.status.value}: its shipments can no longer change it",
            [FieldError("status", need.status.value)],
        )
    target = status_for_progress(need.quantity, need.quantity_allocated, need.quantity_fulfilled)
    if target is need.status:  # same status, other quantities: announced all the same
        db.flush()
        _announce(db, need)
        return
    _move(db, need, target, actor, note)


def _resolve_place(
    db: Session, data: NeedIn, line: int | None = None
) -> tuple[Jurisdiction, Facility | None]:
    facility = None
    if data.facility is not None:
        facility = db.scalar(select(Facility).where(Facility.code == data.facility))
        if facility is None:
            raise InvalidInput.on("facility", f"unknown facility {data.facility!r}")
        if data.jurisdiction and facility.jurisdiction.iso3 != data.jurisdiction:
            raise InvalidInput.on("jurisdiction", f"{facility.code} is in {facility.jurisdiction.iso3}")
        return facility.jurisdiction, facility
    jurisdiction = db.scalar(select(Jurisdiction).where(Jurisdiction.iso3 == data.jurisdiction))
    if jurisdiction is None:
        raise InvalidInput.on("jurisdiction", f"{data.jurisdiction} is not a member of the region")
    return jurisdiction, None


def _may_act_for(actor: Principal, jurisdiction_id: int, facility_id: int | None) -> bool:
    if facility_id is not None:
        return actor.covers_facility(facility_id, jurisdiction_id)
    return actor.covers_jurisdiction(jurisdiction_id)


def create(db: Session, actor: Principal, data: NeedIn, *, today: date | None = None) -> Need:
    jurisdiction, facility = _resolve_place(db, data)
    product = db.scalar(select(Product).where(Product.code == data.product))
    if product is None:
        raise InvalidInput.on("product", f"unknown product {data.product!r}")
    if not _may_act_for(actor, jurisdiction.id, facility.id if facility else None):
        raise PermissionDenied(
            "you may not raise needs for this place",
            [FieldError("facility" if facility else "jurisdiction", "outside your scope")],
        )
    if data.needed_by < (today or date.today()):
        raise InvalidInput.on("needed_by", "is in the past")
    if data.external_id and db.scalar(select(Need.id).where(Need.external_id == data.external_id)):
        raise Conflict("a need with this external id exists", [FieldError("external_id", "already used")])
    need = Need(
        jurisdiction=jurisdiction,
        facility=facility,
        product=product,
        quantity=data.quantity,
        urgency=data.urgency,
        needed_by=data.needed_by,
        justification=data.justification,
        population_served=data.population_served,
        external_id=data.external_id,
        created_by=actor.user_id or None,
        status=NeedStatus.DRAFT,
    )
    db.add(need)
    db.flush()
    db.add(
        NeedTransition(
            need_id=need.id, from_status=None, to_status=NeedStatus.DRAFT, actor_id=actor.user_id or None
        )
    )
    db.flush()
    if data.submit:
        submit(db, actor, need)
    else:
        db.refresh(need, ["history"])
        _announce(db, need)
    return need


def get(db: Session, actor: Principal, need_id: int) -> Need:
    """A need the actor may see; others are not found (no existence leak)."""
    need = db.scalar(_visible(select(Need).where(Need.id == need_id), actor))
    if need is None:
        raise NotFound(f"no need {need_id}")
    return need


def list_needs(
    db: Session,
    actor: Principal,
    *,
    status: Sequence[NeedStatus] | None,
    jurisdiction: str | None,
    facility: str | None,
    product: str | None,
    urgency: Urgency | None,
    limit: int,
    offset: int,
) -> tuple[list[Need], int]:
    stmt = _visible(select(Need), actor)
    if status:
        stmt = stmt.where(Need.status.in_(list(status)))
    if jurisdiction:
        stmt = stmt.where(
            Need.jurisdiction_id
            == select(Jurisdiction.id).where(Jurisdiction.iso3 == jurisdiction.upper()).scalar_subquery()
        )
    if facility:
        stmt = stmt.where(
            Need.facility_id == select(Facility.id).where(Facility.code == facility).scalar_subquery()
        )
    if product:
        stmt = stmt.where(
            Need.product_id == select(Product.id).where(Product.code == product).scalar_subquery()
        )
    if urgency:
        stmt = stmt.where(Need.urgency == urgency)
    total = db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = db.scalars(stmt.order_by(Need.id).limit(limit).offset(offset)).all()
    return list(rows), total


@dataclass(frozen=True)
class OutstandingCounts:
    """How many needs are outstanding (submitted and not yet fully allocated), and how many of
    them are emergencies: the headline figures of the overview and of a member's page."""

    total: int
    emergency: int


def _count_by_member_and_urgency(
    conn: Connection, *, member_id: int | None = None, facility_id: int | None = None
) -> dict[tuple[int, Urgency], int]:
    stmt = select(Need.jurisdiction_id, Need.urgency, func.count()).where(
        Need.status.in_(sorted(OUTSTANDING))
    )
    if member_id is not None:
        stmt = stmt.where(Need.jurisdiction_id == member_id)
    if facility_id is not None:
        stmt = stmt.where(Need.facility_id == facility_id)
    return {
        (j, Urgency(urgency)): int(n)
        for j, urgency, n in conn.execute(stmt.group_by(Need.jurisdiction_id, Need.urgency))
    }


def outstanding_counts(
    db: Session, actor: Principal, jurisdiction_id: int | None = None
) -> OutstandingCounts:
    """Outstanding needs the actor may see (of one member, if given). Counted per member and
    urgency once and kept in the analytics cache until a need changes: at continent scale a count
    over 75,000 outstanding needs takes ~20 ms, and every dashboard view asks for two."""
    counts: dict[tuple[int, Urgency], int] | None = None
    one_member = jurisdiction_id is not None or actor.scope is ScopeKind.JURISDICTION
    if actor.scope is ScopeKind.FACILITY:
        counts = _count_by_member_and_urgency(db.connection(), facility_id=actor.facility_id or -1)
    else:
        cache = summary.cache_for(db)
        if cache is not None:  # one member's counts alone are a few index reads: no fill for them
            counts = cache.derived(
                db, ("outstanding_need_counts",), ["need"], _count_by_member_and_urgency, fill=not one_member
            )
        if counts is None:
            member = jurisdiction_id if jurisdiction_id is not None else actor.jurisdiction_id
            counts = _count_by_member_and_urgency(db.connection(), member_id=member if one_member else None)
    wanted = None if jurisdiction_id is None else {jurisdiction_id}
    if actor.scope is ScopeKind.JURISDICTION:
        own = actor.jurisdiction_id if actor.jurisdiction_id is not None else -1
        wanted = {own} & (wanted or {own})
    chosen = {key: n for key, n in counts.items() if wanted is None or key[0] in wanted}
    return OutstandingCounts(
        sum(chosen.values()), sum(n for (_, urgency), n in chosen.items() if urgency is Urgency.EMERGENCY)
    )


def first_outstanding(
    db: Session, actor: Principal, *, jurisdiction_id: int | None, urgency: Urgency | None, limit: int
) -> list[Need]:
    """The oldest outstanding needs the actor may see (of one member, of one urgency), without
    counting them all (`outstanding_counts` does that)."""
    stmt = _visible(select(Need), actor).where(Need.status.in_(sorted(OUTSTANDING)))
    if jurisdiction_id is not None:
        stmt = stmt.where(Need.jurisdiction_id == jurisdiction_id)
    if urgency is not None:
        stmt = stmt.where(Need.urgency == urgency)
    # a dashboard's list shows no history: not loaded with the rows (it stays loadable on access)
    return list(db.scalars(stmt.options(lazyload(Need.history)).order_by(Need.id).limit(limit)))


def _locked(db: Session, need: Need) -> Need:
    """Re-read the need under a row lock before deciding on it. Decisions are made on its
    committed state: two focal points endorsing at once, or a cancel racing an allocation's
    approval, then take turns, and the second sees what the first did (a 409) instead of both
    succeeding and the last write winning. FOR NO KEY UPDATE, as every decision's lock on needs
    (allocation and shipment ones too): it changes no key, so it must not block a round writing
    results that reference the need (a foreign key check, FOR KEY SHARE); FOR UPDATE did, and
    deadlocked with an approval (tests/test_concurrency.py)."""
    db.refresh(
        need,
        [column.key for column in Need.__mapper__.column_attrs],
        with_for_update={"of": Need, "key_share": True},
    )
    return need


def _require_editor(actor: Principal, need: Need) -> None:
    if not actor.has(Permission.NEED_WRITE) or not _may_act_for(
        actor, need.jurisdiction_id, need.facility_id
    ):
        raise PermissionDenied("you may not change this need")


def update(db: Session, actor: Principal, need_id: int, data: NeedUpdate) -> Need:
    need = _locked(db, get(db, actor, need_id))
    _require_editor(actor, need)
    if need.status is not NeedStatus.DRAFT:
        raise Conflict(
            f"only a draft can be edited; this need is {need.status.value}",
            [FieldError("status", "not a draft")],
        )
    for name, value in data.model_dump(exclude_unset=True).items():
        if value is None:
            raise InvalidInput.on(name, "may not be null")
        setattr(need, name, value)
    db.flush()
    return need


def submit(db: Session, actor: Principal, need: Need) -> Need:
    _require_editor(actor, _locked(db, need))
    transition(db, need, Action.SUBMIT, actor)
    need.submitted_at = utcnow()
    return need


def endorse(db: Session, actor: Principal, need: Need) -> Need:
    """The member's focal point vouches for the need; it then opens to regional allocation."""
    _locked(db, need)
    if not actor.has(Permission.NEED_ENDORSE) or not actor.covers_jurisdiction(need.jurisdiction_id):
        raise PermissionDenied("only the member's national focal point may endorse its needs")
    transition(db, need, Action.ENDORSE, actor)
    need.endorsed_by, need.endorsed_at = actor.user_id or None, utcnow()
    transition(db, need, Action.OPEN, actor, "opened to regional allocation on endorsement")
    return need


def reject(db: Session, actor: Principal, need: Need, reason: str) -> Need:
    _locked(db, need)
    if not actor.has(Permission.NEED_ENDORSE) or not actor.covers_jurisdiction(need.jurisdiction_id):
        raise PermissionDenied("only the member's national focal point may reject its needs")
    transition(db, need, Action.REJECT, actor, reason)
    need.rejection_reason = reason
    return need


def cancel(db: Session, actor: Principal, need: Need, reason: str = "") -> Need:
    _locked(db, need)
    endorser = actor.has(Permission.NEED_ENDORSE) and actor.covers_jurisdiction(need.jurisdiction_id)
    if not endorser:
        _require_editor(actor, need)
    if need.quantity_allocated:
        raise Conflict(
            "part of this need is already allocated; release the allocation first",
            [FieldError("status", "allocated")],
        )
    transition(db, need, Action.CANCEL, actor, reason)
    return need
