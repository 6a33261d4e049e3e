"""The envelope of every list response."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

T = TypeVar("T", bound=BaseModel)


class PageOut(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


def page_of(schema: type[T], rows: Sequence[Any], total: int, page: tuple[int, int]) -> PageOut[T]:
    return PageOut[schema](  # type: ignore[valid-type]
        items=[schema.model_validate(row) for row in rows], total=total, limit=page[0], offset=page[1]
    )
