"""An in-memory runtime for unit tests of the orchestration and the store, never for endpoint
tests (those run real podman containers). Images whose name contains `broken` never get healthy."""

from __future__ import annotations

import threading

from stacks.deployer.runtime.base import DeployOutcome, DesiredDeployment, Observed, WorkloadState


class MemoryDriver:
    def __init__(self) -> None:
        self.workloads: dict[str, Observed] = {}
        self.calls: list[tuple[str, str]] = []
        self.gate: threading.Event | None = None  # when set, deploy waits on it

    def _observed(self, d: DesiredDeployment, state: WorkloadState) -> Observed:
        return Observed(
            deployment_id=d.deployment_id,
            service_id=d.service_id,
            tenant=d.tenant,
            state=state,
            url=f"http://svc-{d.service_name}.test",
            host_port=10000,
        )

    def deploy(self, desired: DesiredDeployment, *, health_timeout: float) -> DeployOutcome:
        self.calls.append(("deploy", desired.deployment_id))
        if self.gate is not None:
            self.gate.wait(10)
        if "broken" in desired.image:
            return DeployOutcome(
                healthy=False,
                observed=self._observed(desired, WorkloadState.MISSING),
                logs="boom: no config\n",
                error="not healthy",
            )
        obs = self._observed(desired, WorkloadState.RUNNING)
        self.workloads[desired.deployment_id] = obs
        return DeployOutcome(healthy=True, observed=obs)

    def stop(self, deployment_id: str) -> None:
        self.calls.append(("stop", deployment_id))
        if deployment_id in self.workloads:
            old = self.workloads[deployment_id]
            self.workloads[deployment_id] = Observed(
                old.deployment_id, old.service_id, old.tenant, WorkloadState.STOPPED, None, None
            )

    def start(self, deployment_id: str, *, health_timeout: float) -> DeployOutcome:
        self.calls.append(("start", deployment_id))
        old = self.workloads.get(deployment_id)
        if old is None:
            missing = Observed(deployment_id, "", "", WorkloadState.MISSING, None, None)
            return DeployOutcome(healthy=False, observed=missing, error="missing")
        obs = Observed(
            old.deployment_id, old.service_id, old.tenant, WorkloadState.RUNNING, "http://x", 1
        )
        self.workloads[deployment_id] = obs
        return DeployOutcome(healthy=True, observed=obs)

    def remove(self, deployment_id: str) -> None:
        self.calls.append(("remove", deployment_id))
        self.workloads.pop(deployment_id, None)

    def answers(self, url: str, health_path: str, *, timeout: float) -> bool:
        return True  # every running workload here serves at once

    def logs(self, deployment_id: str, *, tail: int) -> str:
        return f"logs of {deployment_id}"

    def observe(self) -> list[Observed]:
        return list(self.workloads.values())
