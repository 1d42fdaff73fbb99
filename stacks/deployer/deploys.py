"""Deploy orchestration: one operation at a time per service, history kept, old stays on failure.

Every step that changes the runtime is recorded in the store *before* it happens, so that after a
crash `reconcile.reconcile` can tell what was meant and finish or undo it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from stacks.deployer.auth import Principal
from stacks.deployer.db import session_scope
from stacks.deployer.models import (
    Deployment,
    DeploymentStatus,
    Service,
    ServiceStatus,
    utcnow,
)
from stacks.deployer.runtime.base import (
    DeployOutcome,
    DesiredDeployment,
    Route,
    RuntimeDriver,
    WorkloadState,
)
from stacks.deployer.schemas import (
    DEFAULT_PAGE,
    DNS_LABEL,
    MAX_LOG_TAIL,
    MAX_PAGE,
    DeleteOut,
    DeploymentOut,
    LogsOut,
    ServiceList,
    ServiceOut,
    ServiceSpec,
)

log = logging.getLogger(__name__)
MAX_LOG_CHARS = 64 * 1024


class ServiceError(Exception):
    """An operation refused for a reason the caller can act on; `status` is the HTTP status."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def not_found(name: str) -> ServiceError:
    # Another tenant's service answers exactly like a missing one, so names do not leak.
    return ServiceError(404, f"service {name!r} not found")


def check_page(limit: int, cursor: str | None) -> None:
    """Refuse a bad page request with one message naming what is wrong (REST checks the same
    in its query schema; MCP and in-process callers land here)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ServiceError(422, f"limit must be a whole number from 1 to {MAX_PAGE}, got {limit!r}")
    if cursor is not None and not re.fullmatch(DNS_LABEL, cursor):
        raise ServiceError(
            422, f"cursor must be a service name (a next_cursor from a page), got {cursor[:70]!r}"
        )


def desired_for(service: Service, deployment: Deployment) -> DesiredDeployment:
    spec = ServiceSpec.model_validate(deployment.spec)
    return DesiredDeployment(
        tenant=service.tenant,
        service_id=service.id,
        service_name=service.name,
        deployment_id=deployment.id,
        image=spec.image,
        port=spec.port,
        env=dict(spec.env),
        routes=tuple(Route(name=r.name, port=r.port) for r in spec.routes),
        replicas=spec.replicas,
        cpu=spec.cpu,
        memory_mb=spec.memory_mb,
        health_path=spec.health_path,
    )


class DeploymentRow(Protocol):
    """What the views read of a deployment: an ORM object or a plain row."""

    id: str
    seq: int
    status: str
    reason: str
    spec: dict[str, Any]
    url: str | None
    error: str
    logs: str
    created_at: datetime
    finished_at: datetime | None


class ServiceRow(Protocol):
    name: str
    status: str
    desired_state: str
    spec: dict[str, Any]
    current_deployment_id: str | None
    previous_deployment_id: str | None
    created_at: datetime
    updated_at: datetime


def deployment_out(dep: DeploymentRow) -> DeploymentOut:
    return DeploymentOut(
        id=dep.id,
        seq=dep.seq,
        status=dep.status,
        reason=dep.reason,
        image=str(dep.spec.get("image", "")),
        url=dep.url,
        error=dep.error,
        logs=dep.logs,
        created_at=dep.created_at,
        finished_at=dep.finished_at,
    )


def service_out(svc: ServiceRow, deps: Mapping[str, DeploymentRow]) -> ServiceOut:
    current = deps.get(svc.current_deployment_id or "")
    previous = deps.get(svc.previous_deployment_id or "")
    running = current is not None and svc.status == ServiceStatus.LIVE
    return ServiceOut(
        name=svc.name,
        status=svc.status,
        desired_state=svc.desired_state,
        url=current.url if running and current is not None else None,
        image=str(svc.spec.get("image", "")),
        spec=ServiceSpec.model_validate(svc.spec),
        current_deployment=deployment_out(current) if current else None,
        previous_deployment=deployment_out(previous) if previous else None,
        created_at=svc.created_at,
        updated_at=svc.updated_at,
    )


class Deployer:
    """The operations the REST routes and the MCP tools share."""

    def __init__(
        self, sessions: sessionmaker[Session], driver: RuntimeDriver, *, health_timeout: float
    ) -> None:
        self.sessions = sessions
        self.driver = driver
        self.health_timeout = health_timeout
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # -- locking -------------------------------------------------------------------------------

    @contextmanager
    def locked(self, tenant: str, name: str, busy: str | None = None) -> Iterator[None]:
        """Hold the service's lock; a second operation on it gets 409 instead of waiting."""
        with self._locks_guard:
            lock = self._locks.setdefault((tenant, name), threading.Lock())
        refusal = ServiceError(
            409, busy or f"service {name!r} is busy with another operation; retry shortly"
        )
        if not lock.acquire(blocking=False):
            raise refusal
        try:
            with self._store_lock(tenant, name) as held:
                if not held:
                    raise refusal
                yield
        finally:
            lock.release()

    @contextmanager
    def _store_lock(self, tenant: str, name: str) -> Iterator[bool]:
        """On PostgreSQL, also hold an advisory lock, so API replicas sharing the store take
        turns too; it dies with its connection, so a crashed replica never leaves it held.
        SQLite is the embedded single-process setup, where the thread lock is the whole story."""
        engine = self.sessions.kw["bind"]
        if engine.dialect.name != "postgresql":
            yield True
            return
        digest = hashlib.blake2b(f"{tenant}/{name}".encode(), digest_size=8).digest()
        key = int.from_bytes(digest, "big", signed=True)
        with engine.connect() as conn:
            held = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
            conn.commit()
            try:
                yield held
            finally:
                if held:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()

    # -- reads ---------------------------------------------------------------------------------

    def _load(self, session: Session, principal: Principal, name: str) -> Service:
        svc = session.scalars(
            select(Service).where(Service.tenant == principal.tenant, Service.name == name)
        ).first()
        if svc is None or svc.status == ServiceStatus.DELETING:
            raise not_found(name)
        return svc

    def _view(self, session: Session, services: Sequence[ServiceRow]) -> list[ServiceOut]:
        ids = {
            i
            for s in services
            for i in (s.current_deployment_id, s.previous_deployment_id)
            if i is not None
        }
        deps: dict[str, DeploymentRow] = {}
        if ids:
            # Plain rows, not ORM objects: listing 1,000 services costs a third of the time.
            table = Deployment.__table__
            for dep in session.execute(select(table).where(table.c.id.in_(ids))):
                deps[dep.id] = dep
        return [service_out(s, deps) for s in services]

    def get(self, principal: Principal, name: str) -> ServiceOut:
        with self.sessions() as session:
            return self._view(session, [self._load(session, principal, name)])[0]

    def list_all(self, principal: Principal) -> list[ServiceOut]:
        """Every service of the tenant, by name (in-process callers; the API pages)."""
        services: list[ServiceOut] = []
        cursor: str | None = None
        while True:
            page = self.list_page(principal, limit=MAX_PAGE, cursor=cursor)
            services += page.services
            if page.next_cursor is None:
                return services
            cursor = page.next_cursor

    def list_page(
        self, principal: Principal, *, limit: int = DEFAULT_PAGE, cursor: str | None = None
    ) -> ServiceList:
        """Up to `limit` services by name, after the service named `cursor` (keyset paging:
        a page costs the same on page 1 and page 100, and creates/deletes between pages never
        make one skip or repeat a service)."""
        check_page(limit, cursor)
        with self.sessions() as session:
            table = Service.__table__
            query = select(table).where(
                table.c.tenant == principal.tenant, table.c.status != ServiceStatus.DELETING
            )
            if cursor is not None:
                query = query.where(table.c.name > cursor)
            # One row more than asked says whether another page follows.
            rows = session.execute(query.order_by(table.c.name).limit(limit + 1)).all()
            more = len(rows) > limit
            rows = rows[:limit]
            return ServiceList(
                services=self._view(session, rows), next_cursor=rows[-1].name if more else None
            )

    def deployments(self, principal: Principal, name: str) -> list[DeploymentOut]:
        with self.sessions() as session:
            svc = self._load(session, principal, name)
            rows = session.scalars(
                select(Deployment)
                .where(Deployment.service_id == svc.id)
                .order_by(Deployment.seq.desc())
            )
            return [deployment_out(d) for d in rows]

    def logs(self, principal: Principal, name: str, tail: int) -> LogsOut:
        # REST's query schema says the same; MCP and in-process callers land here.
        if isinstance(tail, bool) or not isinstance(tail, int) or not 0 <= tail <= MAX_LOG_TAIL:
            raise ServiceError(422, f"tail: must be between 0 and {MAX_LOG_TAIL}")
        with self.sessions() as session:
            svc = self._load(session, principal, name)
            dep_id = svc.current_deployment_id
            if dep_id is None:
                latest = session.scalars(
                    select(Deployment)
                    .where(Deployment.service_id == svc.id)
                    .order_by(Deployment.seq.desc())
                ).first()
                stored = latest.logs if latest is not None else ""
                lines = stored.splitlines()[-tail:] if tail else []
                return LogsOut(
                    service=name,
                    deployment_id=latest.id if latest else None,
                    logs="\n".join(lines),
                )
        try:
            text = self.driver.logs(dep_id, tail=tail)
        except Exception as exc:  # the runtime may be gone; the caller still gets an answer
            raise ServiceError(502, f"runtime could not read logs: {exc}") from exc
        return LogsOut(service=name, deployment_id=dep_id, logs=text)

    # -- writes --------------------------------------------------------------------------------

    def create(self, principal: Principal, spec: ServiceSpec) -> ServiceOut:
        exists = f"service {spec.name!r} already exists"
        with self.locked(principal.tenant, spec.name, busy=exists):
            try:
                with session_scope(self.sessions) as session:
                    svc = Service(
                        tenant=principal.tenant,
                        name=spec.name,
                        spec=spec.model_dump(mode="json"),
                        desired_state="running",
                        status=ServiceStatus.DEPLOYING,
                    )
                    session.add(svc)
                    session.flush()
                    dep = self._new_deployment(session, svc, svc.spec, "create")
                    svc_id, dep_id = svc.id, dep.id
            except IntegrityError as exc:
                # The unique (tenant, name) constraint is the arbiter when API replicas race.
                raise ServiceError(409, exists) from exc
            self._run_deploy(svc_id, dep_id)
            return self.get(principal, spec.name)

    def redeploy(
        self, principal: Principal, name: str, spec: ServiceSpec | None = None
    ) -> ServiceOut:
        if spec is not None and spec.name != name:
            raise ServiceError(422, f"body name {spec.name!r} does not match the path {name!r}")
        with self.locked(principal.tenant, name):
            with session_scope(self.sessions) as session:
                svc = self._load(session, principal, name)
                body = spec.model_dump(mode="json") if spec is not None else svc.spec
                dep = self._new_deployment(session, svc, body, "redeploy")
                svc_id, dep_id = svc.id, dep.id
            self._run_deploy(svc_id, dep_id)
            return self.get(principal, name)

    def rollback(self, principal: Principal, name: str) -> ServiceOut:
        with self.locked(principal.tenant, name):
            with session_scope(self.sessions) as session:
                svc = self._load(session, principal, name)
                target = (
                    session.get(Deployment, svc.previous_deployment_id)
                    if svc.previous_deployment_id
                    else None
                )
                if target is None:
                    raise ServiceError(
                        409, f"service {name!r} has no previous healthy deployment to roll back to"
                    )
                dep = self._new_deployment(session, svc, target.spec, "rollback")
                svc_id, dep_id = svc.id, dep.id
            self._run_deploy(svc_id, dep_id)
            return self.get(principal, name)

    def stop(self, principal: Principal, name: str) -> ServiceOut:
        with self.locked(principal.tenant, name):
            with session_scope(self.sessions) as session:
                svc = self._load(session, principal, name)
                current = self._require_current(svc)
                svc.desired_state = "stopped"
            self.driver.stop(current)
            with session_scope(self.sessions) as session:
                svc = self._load(session, principal, name)
                svc.status = ServiceStatus.STOPPED
            return self.get(principal, name)

    def start(self, principal: Principal, name: str) -> ServiceOut:
        with self.locked(principal.tenant, name):
            return self._start_locked(principal, name)

    def restart(self, principal: Principal, name: str) -> ServiceOut:
        with self.locked(principal.tenant, name):
            with self.sessions() as session:
                current = self._require_current(self._load(session, principal, name))
            self.driver.stop(current)
            return self._start_locked(principal, name)

    def delete(self, principal: Principal, name: str) -> DeleteOut:
        with self.locked(principal.tenant, name):
            with session_scope(self.sessions) as session:
                svc = self._load(session, principal, name)
                # Recorded first: a crash from here on is finished by reconciliation.
                svc.status = ServiceStatus.DELETING
                svc_id = svc.id
            self.finish_delete(svc_id)
            return DeleteOut(name=name)

    # -- internals -----------------------------------------------------------------------------

    def finish_delete(self, service_id: str) -> None:
        """Remove every workload of a service marked deleting, then its records."""
        with self.sessions() as session:
            dep_ids = list(
                session.scalars(select(Deployment.id).where(Deployment.service_id == service_id))
            )
        for dep_id in dep_ids:
            self.driver.remove(dep_id)
        with session_scope(self.sessions) as session:
            session.execute(delete(Deployment).where(Deployment.service_id == service_id))
            session.execute(delete(Service).where(Service.id == service_id))

    def _require_current(self, svc: Service) -> str:
        if svc.current_deployment_id is None:
            raise ServiceError(409, f"service {svc.name!r} has no live deployment yet; redeploy it")
        return svc.current_deployment_id

    def _start_locked(self, principal: Principal, name: str) -> ServiceOut:
        with session_scope(self.sessions) as session:
            svc = self._load(session, principal, name)
            current = self._require_current(svc)
            svc.desired_state = "running"
            dep = session.get(Deployment, current)
            assert dep is not None
            desired = desired_for(svc, dep)
        outcome = self.bring_up(desired, start=True)
        self.record_bring_up(desired, outcome, "did not become healthy after start")
        return self.get(principal, name)

    def record_bring_up(
        self, desired: DesiredDeployment, outcome: DeployOutcome, unhealthy: str
    ) -> bool | None:
        """Store what `bring_up` gave: the service live at the deployment's URL, or failed with
        the error (`unhealthy` when the runtime gave none) and the logs. Returns whether it is
        live, or None when the service or deployment is gone meanwhile."""
        with session_scope(self.sessions) as session:
            svc = session.get(Service, desired.service_id)
            dep = session.get(Deployment, desired.deployment_id)
            if svc is None or dep is None:
                return None
            if outcome.healthy:
                svc.status = ServiceStatus.LIVE
                dep.url = outcome.observed.url
            else:
                svc.status = ServiceStatus.FAILED
                dep.error = outcome.error or unhealthy
                dep.logs = outcome.logs[-MAX_LOG_CHARS:]
            return outcome.healthy

    def bring_up(self, desired: DesiredDeployment, *, start: bool) -> DeployOutcome:
        """Start an existing deployment again, or create it when the runtime lost it."""
        try:
            if start:
                outcome = self.driver.start(
                    desired.deployment_id, health_timeout=self.health_timeout
                )
                if outcome.healthy or outcome.observed.state != WorkloadState.MISSING:
                    return outcome
            return self.driver.deploy(desired, health_timeout=self.health_timeout)
        except Exception as exc:
            log.exception("runtime failed to bring up %s", desired.deployment_id)
            return DeployOutcome.failed(desired, f"runtime error: {exc}")

    def _new_deployment(
        self, session: Session, svc: Service, spec: dict[str, Any], reason: str
    ) -> Deployment:
        seq = session.scalar(
            select(func.coalesce(func.max(Deployment.seq), 0)).where(
                Deployment.service_id == svc.id
            )
        )
        dep = Deployment(
            service_id=svc.id,
            seq=int(seq or 0) + 1,
            spec=spec,
            reason=reason,
            status=DeploymentStatus.DEPLOYING,
        )
        session.add(dep)
        session.flush()
        return dep

    def _run_deploy(self, service_id: str, deployment_id: str) -> None:
        """Run one recorded deployment and record its outcome; the old one is replaced only if
        the new one is healthy."""
        with self.sessions() as session:
            svc = session.get(Service, service_id)
            dep = session.get(Deployment, deployment_id)
            assert svc is not None and dep is not None
            desired = desired_for(svc, dep)
        outcome = self.bring_up(desired, start=False)
        old: str | None = None
        with session_scope(self.sessions) as session:
            svc = session.get(Service, service_id)
            dep = session.get(Deployment, deployment_id)
            assert svc is not None and dep is not None
            dep.finished_at = utcnow()
            if outcome.healthy:
                old = svc.current_deployment_id
                if old is not None:
                    old_dep = session.get(Deployment, old)
                    if old_dep is not None:
                        old_dep.status = DeploymentStatus.SUPERSEDED
                    svc.previous_deployment_id = old
                dep.status = DeploymentStatus.LIVE
                dep.url = outcome.observed.url
                svc.current_deployment_id = dep.id
                svc.spec = dep.spec
                svc.status = ServiceStatus.LIVE
                svc.desired_state = "running"
            else:
                dep.status = DeploymentStatus.FAILED
                dep.error = outcome.error or "health check failed"
                dep.logs = outcome.logs[-MAX_LOG_CHARS:]
                if svc.current_deployment_id is None:
                    svc.status = ServiceStatus.FAILED
        if old is not None:
            try:
                self.driver.remove(old)
            except Exception:
                # Harmless to leave: the next reconciliation removes what is not current.
                log.exception("could not remove superseded deployment %s", old)
