"""Every domain's tables, imported in one place so the metadata (and Alembic) sees them all."""

from healthmesh.accounts.models import ApiToken, LoginAttempt, User, WebSession
from healthmesh.db import Base
from healthmesh.registry.models import (
    Authorisation,
    Facility,
    Jurisdiction,
    JurisdictionBloc,
    Product,
    RecognitionAgreement,
)

__all__ = [
    "ApiToken",
    "Authorisation",
    "Base",
    "Facility",
    "Jurisdiction",
    "JurisdictionBloc",
    "LoginAttempt",
    "Product",
    "RecognitionAgreement",
    "User",
    "WebSession",
]
