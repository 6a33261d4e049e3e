"""Every domain's tables, imported in one place so the metadata (and Alembic) sees them all."""

from healthmesh.accounts.models import ApiToken, LoginAttempt, User, WebSession
from healthmesh.allocation.models import AllocationLine, AllocationPlan, AllocationResult
from healthmesh.changes.models import ChangeEvent
from healthmesh.db import Base
from healthmesh.ledger.models import (
    LogCheckpoint,
    LogCosignature,
    LogEntry,
    LogHead,
    LogNode,
    LogWitness,
)
from healthmesh.logistics.models import Blob, Shipment, ShipmentLine, ShipmentTransition, TemperatureLog
from healthmesh.mutual_aid.models import MutualAidPlan
from healthmesh.needs.models import Need, NeedTransition
from healthmesh.registry.models import (
    Authorisation,
    Facility,
    Jurisdiction,
    JurisdictionBloc,
    Product,
    RecognitionAgreement,
)
from healthmesh.supply.models import (
    IngestBatch,
    Lot,
    LotBalance,
    Pledge,
    StockBalance,
    StockEvent,
    StockSnapshot,
)

__all__ = [
    "AllocationLine",
    "AllocationPlan",
    "AllocationResult",
    "ApiToken",
    "Authorisation",
    "Base",
    "Blob",
    "ChangeEvent",
    "Facility",
    "IngestBatch",
    "Jurisdiction",
    "JurisdictionBloc",
    "LogCheckpoint",
    "LogCosignature",
    "LogEntry",
    "LogHead",
    "LogNode",
    "LogWitness",
    "LoginAttempt",
    "Lot",
    "LotBalance",
    "MutualAidPlan",
    "Need",
    "NeedTransition",
    "Pledge",
    "Product",
    "RecognitionAgreement",
    "Shipment",
    "ShipmentLine",
    "ShipmentTransition",
    "StockBalance",
    "StockEvent",
    "StockSnapshot",
    "TemperatureLog",
    "User",
    "WebSession",
]
