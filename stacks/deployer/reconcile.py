"""Make the runtime match the store when the API starts.

The store is the truth. Deploys the API was running when it died are marked failed (their
half-started workloads removed), deletions it was running are finished, services that should
run are started again, and workloads the store does not know are removed. Service and
deployment records are never removed here, except to complete a deletion the user asked for.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import select

from stacks.deployer.db import session_scope
from stacks.deployer.deploys import Deployer, desired_for
from stacks.deployer.models import Deployment, DeploymentStatus, Service, ServiceStatus, utcnow
from stacks.deployer.runtime.base import WorkloadState

log = logging.getLogger(__name__)
# How long a running, routed service gets to answer on its URL before it is started afresh.
URL_CHECK_TIMEOUT = 3.0
INTERRUPTED = "interrupted: the API stopped before this deploy finished; redeploy to retry"


@dataclass
class ReconcileReport:
    interrupted: list[str] = field(default_factory=list)
    deleted_services: list[str] = field(default_factory=list)
    removed_orphans: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def reconcile(deployer: Deployer) -> ReconcileReport:
    report = ReconcileReport()
    driver = deployer.driver

    with session_scope(deployer.sessions) as session:
        for dep in session.scalars(
            select(Deployment).where(Deployment.status == DeploymentStatus.DEPLOYING)
        ):
            dep.status = DeploymentStatus.FAILED
            dep.error = INTERRUPTED
            dep.finished_at = utcnow()
            report.interrupted.append(dep.id)
        for svc in session.scalars(select(Service).where(Service.status == "deploying")):
            if svc.current_deployment_id is None:
                svc.status = ServiceStatus.FAILED
            else:
                svc.status = ServiceStatus.LIVE
        deleting = list(
            session.scalars(select(Service.id).where(Service.status == ServiceStatus.DELETING))
        )

    for service_id in deleting:
        deployer.finish_delete(service_id)
        report.deleted_services.append(service_id)

    with deployer.sessions() as session:
        services = list(session.scalars(select(Service)))
        current = {s.current_deployment_id: s for s in services if s.current_deployment_id}
        deps = {
            d.id: d for d in session.scalars(select(Deployment).where(Deployment.id.in_(current)))
        }

    observed = {o.deployment_id: o for o in driver.observe()}
    for dep_id in observed:
        if dep_id not in current:
            driver.remove(dep_id)
            report.removed_orphans.append(dep_id)

    for dep_id, svc in current.items():
        seen = observed.get(dep_id)
        state = seen.state if seen is not None else WorkloadState.MISSING
        if svc.desired_state == "stopped":
            if state == WorkloadState.RUNNING:
                driver.stop(dep_id)
                report.stopped.append(svc.name)
            if svc.status != ServiceStatus.STOPPED:
                # The API died between recording the stop and finishing it.
                with session_scope(deployer.sessions) as session:
                    row = session.get(Service, svc.id)
                    if row is not None:
                        row.status = ServiceStatus.STOPPED
            continue
        desired = desired_for(svc, deps[dep_id])
        # Running is not enough: its route may have been lost, emptied by a stop, or left on
        # another deployment by a crash mid-switch, and then users get a 502. Unless its stable
        # URL serves it right now, it counts as stopped: starting it again re-routes it and
        # waits until the URL answers, all before the API reports ready.
        if (
            state == WorkloadState.RUNNING
            and seen is not None
            and seen.url is not None
            and driver.answers(
                seen.url,
                desired.health_path,
                timeout=min(URL_CHECK_TIMEOUT, deployer.health_timeout),
            )
        ):
            continue
        outcome = deployer.bring_up(desired, start=state != WorkloadState.MISSING)
        live = deployer.record_bring_up(desired, outcome, "did not become healthy when restarted")
        if live is not None:
            (report.restarted if live else report.failed).append(svc.name)
    log.info("reconciled: %s", report)
    return report


def sweep_orphans(deployer: Deployer) -> list[str]:
    """Remove workloads that belong to no current or in-flight deployment, while the API runs.

    This catches what a start-up reconciliation cannot see: a podman command that was still
    running when the previous API process died and finished after the new one had started.
    The runtime is observed *before* the store is read, so a deployment that becomes current in
    between is still in the store's answer and kept.
    """
    observed = [o.deployment_id for o in deployer.driver.observe()]
    if not observed:
        return []
    with deployer.sessions() as session:
        keep = set(
            session.scalars(
                select(Service.current_deployment_id).where(
                    Service.current_deployment_id.is_not(None)
                )
            )
        )
        keep |= set(
            session.scalars(
                select(Deployment.id).where(Deployment.status == DeploymentStatus.DEPLOYING)
            )
        )
    removed = [dep_id for dep_id in observed if dep_id not in keep]
    for dep_id in removed:
        deployer.driver.remove(dep_id)
    if removed:
        log.info("removed orphaned workloads: %s", removed)
    return removed
