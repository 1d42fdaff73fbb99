"""The interface every runtime driver implements (podman now, Kubernetes next).

The API decides *what* should run (a `DesiredDeployment`); a driver makes it so and reports
what it sees (`Observed`). Drivers keep no state of their own: everything they need to find
their workloads again after a restart is in the labels they put on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

# Labels every workload carries, so reconciliation can tie it back to the store.
LABEL_MANAGED = "pier.managed"
LABEL_TENANT = "pier.tenant"
LABEL_SERVICE = "pier.service"
LABEL_SERVICE_ID = "pier.service-id"
LABEL_DEPLOYMENT = "pier.deployment"
LABEL_COMPONENT = "pier.component"


@dataclass(frozen=True)
class Route:
    """A named container port; the driver passes the host port as $PORT_<NAME>."""

    name: str
    port: int


@dataclass(frozen=True)
class DesiredDeployment:
    tenant: str
    service_id: str
    service_name: str
    deployment_id: str
    image: str
    port: int
    env: Mapping[str, str] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    replicas: int = 1
    cpu: float | None = None  # cores
    memory_mb: int | None = None
    health_path: str = "/"
    component: str = "web"


class WorkloadState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    MISSING = "missing"


@dataclass(frozen=True)
class Observed:
    """One deployment as the runtime sees it."""

    deployment_id: str
    service_id: str
    tenant: str
    state: WorkloadState
    url: str | None
    host_port: int | None
    container_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeployOutcome:
    healthy: bool
    observed: Observed
    # Last lines of the new workload's output; filled when the health check failed.
    logs: str = ""
    error: str = ""

    @classmethod
    def failed(cls, desired: DesiredDeployment, error: str, logs: str = "") -> DeployOutcome:
        """The outcome of a deploy that left nothing running."""
        observed = Observed(
            deployment_id=desired.deployment_id,
            service_id=desired.service_id,
            tenant=desired.tenant,
            state=WorkloadState.MISSING,
            url=None,
            host_port=None,
        )
        return cls(healthy=False, observed=observed, logs=logs, error=error)


class RuntimeDriver(Protocol):
    def deploy(self, desired: DesiredDeployment, *, health_timeout: float) -> DeployOutcome:
        """Start `desired` next to whatever runs now and wait until it is healthy.

        On failure the new workload is removed and nothing that ran before is touched.
        """
        ...

    def stop(self, deployment_id: str) -> None: ...

    def start(self, deployment_id: str, *, health_timeout: float) -> DeployOutcome: ...

    def remove(self, deployment_id: str) -> None:
        """Remove the deployment's workloads; removing a missing one is not an error."""
        ...

    def logs(self, deployment_id: str, *, tail: int) -> str: ...

    def answers(self, url: str, health_path: str, *, timeout: float) -> bool:
        """Whether the service URL answers `health_path` with a 2xx within `timeout`.

        What a user of the service would get: checked through the stable URL (not the
        workload's own port) before a deployment is reported live again after a restart.
        """
        ...

    def observe(self) -> list[Observed]:
        """Every workload this driver manages, found by its labels."""
        ...
