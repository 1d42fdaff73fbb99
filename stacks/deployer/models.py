"""Tables of the store: API keys, services and their deployment history."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps in UTC, timezone-aware on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class ServiceStatus(StrEnum):
    DEPLOYING = "deploying"
    LIVE = "live"
    FAILED = "failed"
    STOPPED = "stopped"
    DELETING = "deleting"


class DeploymentStatus(StrEnum):
    DEPLOYING = "deploying"
    LIVE = "live"
    FAILED = "failed"
    # Was live, then replaced by a newer deployment; a rollback target.
    SUPERSEDED = "superseded"


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(63), index=True)
    name: Mapped[str] = mapped_column(String(100))
    # The public start of the key, so a lookup needs one indexed read and one hash check.
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Service(Base):
    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("tenant", "name", name="uq_services_tenant_name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(63))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    # What the user asked for: "running" or "stopped"; reconciliation restores it.
    desired_state: Mapped[str] = mapped_column(String(16), default="running")
    status: Mapped[str] = mapped_column(String(16), default=ServiceStatus.DEPLOYING)
    current_deployment_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # The deployment that was live before the current one: the rollback target.
    previous_deployment_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Deployment(Base):
    __tablename__ = "deployments"
    __table_args__ = (
        UniqueConstraint("service_id", "seq", name="uq_deployments_service_seq"),
        Index("ix_deployments_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    service_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("services.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=DeploymentStatus.DEPLOYING)
    url: Mapped[str | None] = mapped_column(String(200), nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    logs: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
