"""Transparency log tables: entries, the Merkle tree's complete subtrees, the head (the one row
appends lock), signed checkpoints, witnesses and their cosignatures.

A proof reads O(log n) rows of `log_nodes` by primary key; nothing ever scans the log.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from healthmesh.db import Base, UTCDateTime, utcnow

LeafIndex = BigInteger().with_variant(Integer, "sqlite")


class LogEntry(Base):
    """One leaf: a decision recorded as canonical JSON (no personal data). Its leaf hash lives in
    `log_nodes` (level 0) only, so the hash the API shows is the one its proofs are built from."""

    __tablename__ = "log_entries"
    __table_args__ = (Index("ix_log_entries_kind", "kind", "index"),)

    index: Mapped[int] = mapped_column(LeafIndex, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(48))
    body: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LogNode(Base):
    """The hash of the complete subtree at (level, index): leaves [index * 2^level, (index + 1) * 2^level)."""

    __tablename__ = "log_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(LeafIndex, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class LogHead(Base):
    """The log's size: a single row, locked by every append so leaves get consecutive indices."""

    __tablename__ = "log_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(LeafIndex, default=0)


class LogCheckpoint(Base):
    """A tree head the log signed (a C2SP signed note), with the cosignatures collected since."""

    __tablename__ = "log_checkpoints"

    size: Mapped[int] = mapped_column(LeafIndex, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)  # the body and the log's own signature
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LogWitness(Base):
    """A member's witness: its verifier key, where to reach it, and the size it last cosigned."""

    __tablename__ = "log_witnesses"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    verifier_key: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(String(500), default="")
    last_size: Mapped[int] = mapped_column(LeafIndex, default=0)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LogCosignature(Base):
    """A witness's cosignature line on a checkpoint."""

    __tablename__ = "log_cosignatures"

    checkpoint_size: Mapped[int] = mapped_column(
        ForeignKey("log_checkpoints.size", ondelete="CASCADE"), primary_key=True
    )
    witness: Mapped[str] = mapped_column(ForeignKey("log_witnesses.name"), primary_key=True)
    line: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
