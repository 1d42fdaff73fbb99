"""The podman runtime driver: one container per replica, published on 127.0.0.1 only.

Every container carries the labels of `base` plus `pier.scope`, so one driver (one local API, or
one test run) only ever sees and removes its own containers, and finds them again after a
restart. Each service gets a stable URL from the service proxy (`proxy.py`), which is switched to
a new deployment only once it is healthy.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from stacks.deployer.runtime import health, ports, proxy
from stacks.deployer.runtime.base import (
    LABEL_COMPONENT,
    LABEL_DEPLOYMENT,
    LABEL_MANAGED,
    LABEL_SERVICE,
    LABEL_SERVICE_ID,
    LABEL_TENANT,
    DeployOutcome,
    DesiredDeployment,
    Observed,
    WorkloadState,
)

# runc explicitly: crun fails on cgroup-v1 hosts like ours (see RECIPES.md).
PODMAN_BASE: tuple[str, ...] = ("podman", "--runtime", "/usr/sbin/runc")

LABEL_SCOPE = "pier.scope"
LABEL_REPLICA = "pier.replica"
LABEL_HOST_PORT = "pier.host-port"
LABEL_HEALTH_PATH = "pier.health-path"

DEFAULT_SCOPE = "local"
LOG_TAIL_ON_FAILURE = 50
# How long stop/remove of a deployment waits for connections the proxy still forwards to it.
DRAIN_TIMEOUT = 5.0
_PORT_IN_USE = re.compile(r"address already in use|port is already allocated", re.IGNORECASE)
_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]+")


class PodmanError(RuntimeError):
    """A podman command failed; the message carries its stderr."""


def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*PODMAN_BASE, *args], capture_output=True, text=True, check=False, timeout=120
    )
    if check and result.returncode != 0:
        raise PodmanError(f"podman {args[0]} failed: {result.stderr.strip()}")
    return result


class PodmanDriver:
    """`RuntimeDriver` on the local podman, with a stable proxied URL per service."""

    def __init__(
        self,
        state_dir: Path,
        scope: str,
        *,
        proxy_idle_exit: float = proxy.DEFAULT_IDLE_EXIT,
    ) -> None:
        # Both come from Settings (PIER_RUNTIME_DIR, PIER_RUNTIME_SCOPE) or the caller.
        self.state_dir = state_dir.resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.scope = scope
        if _NAME_UNSAFE.search(self.scope):
            raise ValueError(f"scope {self.scope!r} may hold only letters, digits, '_', '.', '-'")
        self.proxy_idle_exit = proxy_idle_exit
        # Serialises route changes of this process; the API adds its own per-service lock.
        self._lock = threading.Lock()

    # --- RuntimeDriver -------------------------------------------------------------------------

    def deploy(self, desired: DesiredDeployment, *, health_timeout: float) -> DeployOutcome:
        # A retried deploy of the same deployment (reconciliation after a crash) starts afresh.
        self._remove_containers([c["Id"] for c in self._containers(desired.deployment_id)])
        ids: list[str] = []
        host_ports: list[int] = []
        try:
            for replica in range(max(1, desired.replicas)):
                cid, port = self._run(desired, replica)
                ids.append(cid)
                host_ports.append(port)
        except PodmanError as exc:
            logs = self._logs_of(ids, LOG_TAIL_ON_FAILURE)
            self._remove_containers(ids)
            return DeployOutcome.failed(desired, str(exc), logs)
        ok, problem = self._wait_all(ids, host_ports, desired.health_path, health_timeout)
        if not ok:
            logs = self._logs_of(ids, LOG_TAIL_ON_FAILURE)
            self._remove_containers(ids)
            return DeployOutcome.failed(desired, problem, logs)
        try:
            url = self._route(desired.service_id, desired.deployment_id, host_ports)
        except proxy.ProxyError as exc:
            # Healthy but unreachable at its service URL: not live, and nothing left behind.
            self._remove_containers(ids)
            return DeployOutcome.failed(desired, str(exc))
        return DeployOutcome(
            healthy=True,
            observed=Observed(
                deployment_id=desired.deployment_id,
                service_id=desired.service_id,
                tenant=desired.tenant,
                state=WorkloadState.RUNNING,
                url=url,
                host_port=host_ports[0],
                container_ids=tuple(ids),
            ),
        )

    def stop(self, deployment_id: str) -> None:
        containers = self._containers(deployment_id=deployment_id)
        if not containers:
            return
        self._unroute_and_drain(containers)
        _podman("stop", "-t", "0", *[c["Id"] for c in containers], check=False)

    def start(self, deployment_id: str, *, health_timeout: float) -> DeployOutcome:
        containers = self._containers(deployment_id=deployment_id)
        if not containers:
            return DeployOutcome(
                healthy=False,
                observed=_missing(deployment_id),
                error=f"deployment {deployment_id} has no containers to start",
            )
        ids = [c["Id"] for c in containers]
        labels = containers[0]["Labels"]
        result = _podman("start", *ids, check=False)
        host_ports = [int(c["Labels"][LABEL_HOST_PORT]) for c in containers]
        if result.returncode != 0:
            ok, problem = False, f"podman start failed: {result.stderr.strip()}"
        else:
            ok, problem = self._wait_all(
                ids, host_ports, labels.get(LABEL_HEALTH_PATH, "/"), health_timeout
            )
        if not ok:
            logs = self._logs_of(ids, LOG_TAIL_ON_FAILURE)
            _podman("stop", "-t", "0", *ids, check=False)
            return DeployOutcome(
                healthy=False,
                observed=self._observed_from(deployment_id, self._containers(deployment_id)),
                logs=logs,
                error=problem,
            )
        url = self._route(labels[LABEL_SERVICE_ID], deployment_id, host_ports)
        # Healthy on its own ports is not yet what users see: wait until the stable URL serves
        # it too, so "live" never comes with a 502.
        path = labels.get(LABEL_HEALTH_PATH, "/")
        if not self.answers(url, path, timeout=max(1.0, health_timeout)):
            logs = self._logs_of(ids, LOG_TAIL_ON_FAILURE)
            self.stop(deployment_id)
            return DeployOutcome(
                healthy=False,
                observed=self._observed_from(deployment_id, self._containers(deployment_id)),
                logs=logs,
                error=f"healthy, but its service URL {url} did not answer {path}",
            )
        return DeployOutcome(
            healthy=True,
            observed=self._observed_from(deployment_id, self._containers(deployment_id)),
        )

    def remove(self, deployment_id: str) -> None:
        containers = self._containers(deployment_id=deployment_id)
        if not containers:
            return
        self._unroute_and_drain(containers)
        self._remove_containers([c["Id"] for c in containers])
        service_id = containers[0]["Labels"][LABEL_SERVICE_ID]
        # The service's last deployment is gone: free its stable port too.
        if not self._containers(service_id=service_id):
            with self._lock:
                self._proxy({"op": "drop", "service_id": service_id})

    def logs(self, deployment_id: str, *, tail: int) -> str:
        return self._logs_of([c["Id"] for c in self._containers(deployment_id)], tail)

    def answers(self, url: str, health_path: str, *, timeout: float) -> bool:
        port = urlsplit(url).port
        if port is None:
            return False
        path = health_path if health_path.startswith("/") else f"/{health_path}"
        ok, _problem = health.wait_healthy(port, path, timeout=timeout)
        return ok

    def observe(self) -> list[Observed]:
        by_deployment: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for c in self._containers():
            by_deployment[c["Labels"][LABEL_DEPLOYMENT]].append(c)
        routes = self._routes()
        return [self._observed_from(dep, cs, routes) for dep, cs in sorted(by_deployment.items())]

    # --- beyond the protocol -------------------------------------------------------------------

    def service_url(self, service_id: str) -> str | None:
        """The stable URL of `service_id`, if the proxy routes it."""
        route = self._routes().get(service_id)
        return f"http://127.0.0.1:{route['port']}" if route else None

    def close(self) -> None:
        """Stop this state directory's proxy if it routes nothing any more."""
        try:
            reply = proxy.call(self.state_dir, {"op": "get"}, spawn=False)
        except proxy.ProxyError:
            return
        if not reply["routes"]:
            proxy.call(self.state_dir, {"op": "shutdown"}, spawn=False)

    def shutdown_proxy(self) -> None:
        """Stop the proxy even if it routes services (`invoke down`); routes stay on disk."""
        try:
            proxy.call(self.state_dir, {"op": "shutdown"}, spawn=False)
        except proxy.ProxyError:
            return

    # --- helpers -------------------------------------------------------------------------------

    def _run(self, desired: DesiredDeployment, replica: int) -> tuple[str, int]:
        name = _NAME_UNSAFE.sub(
            "-",
            f"pier-{self.scope}-{desired.service_name}-{desired.deployment_id}-{replica}",
        )
        last_error = ""
        # A port that looked free can be taken before podman binds it; pick another then.
        for _ in range(3):
            port = ports.allocate()
            route_ports = [ports.allocate(exclude=[port]) for _ in desired.routes]
            env = {**desired.env, "PORT": str(port)}
            for route, route_port in zip(desired.routes, route_ports, strict=True):
                env[f"PORT_{_env_name(route.name)}"] = str(route_port)
            labels = {
                LABEL_MANAGED: "true",
                LABEL_SCOPE: self.scope,
                LABEL_TENANT: desired.tenant,
                LABEL_SERVICE: desired.service_name,
                LABEL_SERVICE_ID: desired.service_id,
                LABEL_DEPLOYMENT: desired.deployment_id,
                LABEL_COMPONENT: desired.component,
                LABEL_REPLICA: str(replica),
                LABEL_HOST_PORT: str(port),
                LABEL_HEALTH_PATH: desired.health_path,
            }
            args: list[str] = ["run", "-d", "--name", name, "--stop-timeout", "0"]
            # $PORT is both the host and the container port, so the app binds what it is told.
            for p in (port, *route_ports):
                args += ["-p", f"127.0.0.1:{p}:{p}"]
            for key, value in env.items():
                args += ["--env", f"{key}={value}"]
            for key, value in labels.items():
                args += ["--label", f"{key}={value}"]
            if desired.cpu is not None:
                args += ["--cpus", f"{desired.cpu:g}"]
            if desired.memory_mb is not None:
                args += ["--memory", f"{desired.memory_mb}m"]
            result = _podman(*args, desired.image, check=False)
            if result.returncode == 0:
                return result.stdout.strip(), port
            last_error = result.stderr.strip()
            # podman may leave a created-but-not-started container behind under our name.
            _podman("rm", "-f", "-t", "0", name, check=False)
            if not _PORT_IN_USE.search(last_error):
                break
        raise PodmanError(f"podman run {desired.image} failed: {last_error}")

    def _wait_all(
        self, ids: Sequence[str], host_ports: Sequence[int], health_path: str, timeout: float
    ) -> tuple[bool, str]:
        deadline = time.monotonic() + timeout
        path = health_path if health_path.startswith("/") else f"/{health_path}"
        for cid, port in zip(ids, host_ports, strict=True):
            ok, problem = health.wait_healthy(
                port,
                path,
                timeout=max(0.0, deadline - time.monotonic()),
                still_running=lambda cid=cid: self._running(cid),  # type: ignore[misc]
            )
            if not ok:
                return False, f"not healthy within {timeout:g}s: {problem}"
        return True, ""

    def _running(self, container_id: str) -> bool:
        result = _podman("inspect", "--format", "{{.State.Running}}", container_id, check=False)
        return result.stdout.strip() == "true"

    def _route(self, service_id: str, deployment_id: str, backends: list[int]) -> str:
        with self._lock:
            current = self._routes().get(service_id)
            port = current["port"] if current else ports.allocate()
            for _ in range(3):
                try:
                    self._proxy(
                        {
                            "op": "set",
                            "service_id": service_id,
                            "port": port,
                            "deployment_id": deployment_id,
                            "backends": backends,
                        },
                    )
                    return f"http://127.0.0.1:{port}"
                except proxy.ProxyError:
                    if current is not None:
                        raise
                    port = ports.allocate(exclude=[port])
            raise proxy.ProxyError(f"no stable port could be bound for service {service_id}")

    def _unroute_and_drain(self, containers: list[dict[str, Any]]) -> None:
        labels = containers[0]["Labels"]
        service_id, deployment_id = labels[LABEL_SERVICE_ID], labels[LABEL_DEPLOYMENT]
        with self._lock:
            route = self._routes().get(service_id)
            if route and route["deployment_id"] == deployment_id:
                fallback, backends = self._fallback(service_id, deployment_id)
                self._proxy(
                    {
                        "op": "set",
                        "service_id": service_id,
                        "port": route["port"],
                        "deployment_id": fallback,
                        "backends": backends,
                    },
                )
        own = {str(c["Labels"].get(LABEL_HOST_PORT)) for c in containers}
        deadline = time.monotonic() + DRAIN_TIMEOUT
        delay = 0.01
        while time.monotonic() < deadline:
            active = self._proxy_state().get("active", {})
            if not own & set(active):
                return
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def _fallback(self, service_id: str, leaving: str) -> tuple[str | None, list[int]]:
        """The newest other running deployment of the service, to route to instead of nothing.

        Normally there is none (the API removes the old deployment after a switch). After a
        crash between the switch and the store update, the API's reconciliation removes the new,
        unrecorded deployment while the recorded one still runs: the URL must go back to it.
        """
        by_deployment: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for c in self._containers(service_id=service_id):
            dep = c["Labels"][LABEL_DEPLOYMENT]
            if dep != leaving and c.get("State") == "running":
                by_deployment[dep].append(c)
        if not by_deployment:
            return None, []
        newest = max(by_deployment, key=lambda d: max(int(c["Created"]) for c in by_deployment[d]))
        return newest, [int(c["Labels"][LABEL_HOST_PORT]) for c in by_deployment[newest]]

    def _proxy_state(self) -> dict[str, Any]:
        try:
            return proxy.call(self.state_dir, {"op": "get"}, spawn=False)
        except proxy.ProxyError:
            return {}

    def _routes(self) -> dict[str, Any]:
        # Asking spawns the proxy if it died, so routes come back after a reboot or a kill.
        routes: dict[str, Any] = self._proxy({"op": "get"})["routes"]
        return routes

    def _proxy(self, msg: dict[str, Any]) -> dict[str, Any]:
        return proxy.call(self.state_dir, msg, idle_exit=self.proxy_idle_exit)

    def _containers(
        self, deployment_id: str | None = None, *, service_id: str | None = None
    ) -> list[dict[str, Any]]:
        filters = [f"label={LABEL_MANAGED}=true", f"label={LABEL_SCOPE}={self.scope}"]
        if deployment_id is not None:
            filters.append(f"label={LABEL_DEPLOYMENT}={deployment_id}")
        if service_id is not None:
            filters.append(f"label={LABEL_SERVICE_ID}={service_id}")
        args = ["ps", "-a", "--format", "json"]
        for f in filters:
            args += ["--filter", f]
        found: list[dict[str, Any]] = json.loads(_podman(*args).stdout or "[]")
        # Filters are exact label matches; re-check so a podman quirk can never widen them.
        return [
            c
            for c in found
            if (c.get("Labels") or {}).get(LABEL_SCOPE) == self.scope
            and (deployment_id is None or c["Labels"].get(LABEL_DEPLOYMENT) == deployment_id)
            and (service_id is None or c["Labels"].get(LABEL_SERVICE_ID) == service_id)
        ]

    def _remove_containers(self, ids: Sequence[str]) -> None:
        if ids:
            _podman("rm", "-f", "-t", "0", *ids, check=False)

    def _logs_of(self, ids: Sequence[str], tail: int) -> str:
        parts: list[str] = []
        for cid in ids:
            result = _podman("logs", "--tail", str(max(0, tail)), cid, check=False)
            text = result.stdout + result.stderr
            parts.append(text if len(ids) == 1 else f"--- {cid[:12]}\n{text}")
        return "".join(parts)

    def _observed_from(
        self,
        deployment_id: str,
        containers: list[dict[str, Any]],
        routes: dict[str, Any] | None = None,
    ) -> Observed:
        if not containers:
            return _missing(deployment_id)
        labels = containers[0]["Labels"]
        routes = self._routes() if routes is None else routes
        route = routes.get(labels[LABEL_SERVICE_ID])
        running = any(c.get("State") == "running" for c in containers)
        ordered = sorted(containers, key=lambda c: int(c["Labels"].get(LABEL_REPLICA, 0)))
        return Observed(
            deployment_id=deployment_id,
            service_id=labels[LABEL_SERVICE_ID],
            tenant=labels[LABEL_TENANT],
            state=WorkloadState.RUNNING if running else WorkloadState.STOPPED,
            url=f"http://127.0.0.1:{route['port']}"
            if route is not None and _routes_to(route, containers)
            else None,
            host_port=int(ordered[0]["Labels"][LABEL_HOST_PORT]),
            container_ids=tuple(c["Id"] for c in ordered),
        )


def _routes_to(route: dict[str, Any] | None, containers: list[dict[str, Any]]) -> bool:
    """Whether the service's proxy route sends requests to exactly these containers.

    A route that exists is not enough: after a stop it points nowhere, and after a crash
    mid-switch it may point at another deployment; the service URL would answer 502 or serve the
    wrong deployment, so such a deployment is observed as not routed (no URL).
    """
    if not route or not route.get("backends"):
        return False
    own = {int(c["Labels"][LABEL_HOST_PORT]) for c in containers}
    deployment = containers[0]["Labels"][LABEL_DEPLOYMENT]
    return route.get("deployment_id") == deployment and set(route["backends"]) == own


def _missing(deployment_id: str) -> Observed:
    return Observed(
        deployment_id=deployment_id,
        service_id="",
        tenant="",
        state=WorkloadState.MISSING,
        url=None,
        host_port=None,
    )


def _env_name(route_name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", route_name.upper())
