"""PodmanDriver against real podman containers and real HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from stacks.deployer.runtime import ports, proxy
from stacks.deployer.runtime.base import (
    LABEL_COMPONENT,
    LABEL_DEPLOYMENT,
    LABEL_MANAGED,
    LABEL_SERVICE,
    LABEL_SERVICE_ID,
    LABEL_TENANT,
    DesiredDeployment,
    Route,
    WorkloadState,
)
from stacks.deployer.runtime.images import EXAMPLE_HEALTH_PATH
from stacks.deployer.runtime.podman import LABEL_SCOPE, PODMAN_BASE, PodmanDriver
from stacks.deployer.runtime.ports import PORT_MAX, PORT_MIN
from tests.stacks.deployer.conftest import remove_scope
from tests.stacks.deployer.url_load import UrlLoad

pytestmark = [pytest.mark.podman, pytest.mark.slow]


def desired(image: str, deployment_id: str, **kw: Any) -> DesiredDeployment:
    base: dict[str, Any] = {
        "tenant": "acme",
        "service_id": "svc-1",
        "service_name": "web",
        "deployment_id": deployment_id,
        "image": image,
        "port": 8080,
        "health_path": EXAMPLE_HEALTH_PATH,
    }
    return DesiredDeployment(**{**base, **kw})


def inspect(container_id: str) -> dict[str, Any]:
    out = subprocess.run(
        [*PODMAN_BASE, "inspect", container_id], capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, Any] = json.loads(out)[0]
    return result


def exists(container_id: str) -> bool:
    result = subprocess.run([*PODMAN_BASE, "container", "exists", container_id], check=False)
    return result.returncode == 0


def test_deploy_is_live_on_a_stable_loopback_url_with_labels_and_limits(
    driver: PodmanDriver, example_image: str
) -> None:
    outcome = driver.deploy(
        desired(
            example_image,
            "dep-1",
            env={"GREETING": "hello one"},
            routes=(Route("admin", 9000),),
            cpu=0.5,
            memory_mb=64,
        ),
        health_timeout=20,
    )

    assert outcome.healthy, outcome.error
    obs = outcome.observed
    assert obs.state == WorkloadState.RUNNING and obs.url is not None
    assert httpx.get(obs.url).text.strip() == "hello one"
    assert httpx.get(f"http://127.0.0.1:{obs.host_port}/").text.strip() == "hello one"
    assert obs.host_port is not None and PORT_MIN <= obs.host_port <= PORT_MAX
    info = inspect(obs.container_ids[0])
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    assert env["PORT"] == str(obs.host_port)
    assert PORT_MIN <= int(env["PORT_ADMIN"]) <= PORT_MAX and env["PORT_ADMIN"] != env["PORT"]
    bindings = info["HostConfig"]["PortBindings"]
    assert {b["HostIp"] for bs in bindings.values() for b in bs} == {"127.0.0.1"}
    labels = info["Config"]["Labels"]
    assert labels[LABEL_MANAGED] == "true" and labels[LABEL_SCOPE] == driver.scope
    assert labels[LABEL_TENANT] == "acme" and labels[LABEL_SERVICE] == "web"
    assert labels[LABEL_SERVICE_ID] == "svc-1" and labels[LABEL_DEPLOYMENT] == "dep-1"
    assert labels[LABEL_COMPONENT] == "web"
    assert info["HostConfig"]["NanoCpus"] == 500_000_000
    assert info["HostConfig"]["Memory"] == 64 * 1024 * 1024


def test_redeploy_switches_without_a_single_failed_request(
    driver: PodmanDriver, example_image: str
) -> None:
    first = driver.deploy(
        desired(example_image, "dep-1", env={"GREETING": "v1"}), health_timeout=20
    )
    assert first.healthy and first.observed.url
    url = first.observed.url
    with UrlLoad(url, clients=2) as load:
        time.sleep(0.3)
        second = driver.deploy(
            desired(example_image, "dep-2", env={"GREETING": "v2"}), health_timeout=20
        )
        # What the API does after the switch: remove the superseded deployment.
        driver.remove("dep-1")
        time.sleep(0.3)

    assert second.healthy and second.observed.url == url
    assert load.failures == []
    for mine in load.answers:
        # v1 until the switch, v2 from then on: never back to the old deployment.
        assert mine[0] == "v1" and mine[-1] == "v2"
        assert "v1" not in mine[mine.index("v2") :]
    assert not any(exists(c) for c in first.observed.container_ids)
    assert min(len(mine) for mine in load.answers) > 20


def test_crashing_deploy_fails_fast_with_logs_and_the_old_one_keeps_serving(
    driver: PodmanDriver, example_image: str, crashing_image: str
) -> None:
    live = driver.deploy(
        desired(example_image, "dep-1", env={"GREETING": "old"}), health_timeout=20
    )
    assert live.healthy and live.observed.url

    started = time.monotonic()
    outcome = driver.deploy(desired(crashing_image, "dep-2"), health_timeout=30)
    elapsed = time.monotonic() - started

    assert not outcome.healthy
    assert "crashing on purpose: missing DATABASE_URL" in outcome.logs
    assert "exited" in outcome.error
    assert elapsed < 10, "an exited container must fail the deploy without waiting out the timeout"
    assert outcome.observed.state == WorkloadState.MISSING
    assert [o.deployment_id for o in driver.observe()] == ["dep-1"]
    assert httpx.get(live.observed.url).text.strip() == "old"


def test_unhealthy_deploy_times_out_and_is_removed(
    driver: PodmanDriver, example_image: str
) -> None:
    live = driver.deploy(desired(example_image, "dep-1"), health_timeout=20)
    assert live.healthy

    outcome = driver.deploy(
        desired(example_image, "dep-2", health_path="/no-such-path"), health_timeout=1.5
    )

    assert not outcome.healthy
    assert "404" in outcome.error and "1.5s" in outcome.error
    assert "serving on port" in outcome.logs
    assert [o.deployment_id for o in driver.observe()] == ["dep-1"]
    assert live.observed.url and httpx.get(live.observed.url).status_code == 200


def test_unknown_image_fails_with_podmans_message(driver: PodmanDriver) -> None:
    outcome = driver.deploy(desired("localhost/pier-no-such-image:0", "dep-1"), health_timeout=5)
    assert not outcome.healthy
    assert "pier-no-such-image" in outcome.error
    assert driver.observe() == []


def test_stop_start_logs_and_remove(driver: PodmanDriver, example_image: str) -> None:
    live = driver.deploy(desired(example_image, "dep-1"), health_timeout=20)
    assert live.healthy and live.observed.url
    url = live.observed.url

    driver.stop("dep-1")
    (obs,) = driver.observe()
    assert obs.state == WorkloadState.STOPPED
    assert httpx.get(url).status_code == 502  # the service URL stays, with nothing behind it

    started = driver.start("dep-1", health_timeout=20)
    assert started.healthy and started.observed.state == WorkloadState.RUNNING
    assert started.observed.url == url and httpx.get(url).status_code == 200

    httpx.get(url)
    logs = driver.logs("dep-1", tail=1)
    assert len(logs.strip().splitlines()) == 1
    assert "serving on port" in driver.logs("dep-1", tail=100)

    driver.remove("dep-1")
    assert driver.observe() == []
    assert not exists(live.observed.container_ids[0])
    assert driver.service_url("svc-1") is None
    # Missing deployments: not an error, nothing to do.
    driver.remove("dep-1")
    driver.stop("dep-1")
    assert driver.logs("dep-1", tail=5) == ""
    missing = driver.start("dep-1", health_timeout=1)
    assert not missing.healthy and missing.observed.state == WorkloadState.MISSING


def test_replicas_are_balanced_and_a_retried_deploy_does_not_duplicate(
    driver: PodmanDriver, example_image: str
) -> None:
    outcome = driver.deploy(desired(example_image, "dep-1", replicas=2), health_timeout=20)
    assert outcome.healthy and len(outcome.observed.container_ids) == 2
    again = driver.deploy(desired(example_image, "dep-1", replicas=2), health_timeout=20)
    assert again.healthy
    (obs,) = driver.observe()
    assert set(obs.container_ids) == set(again.observed.container_ids)
    assert not any(exists(c) for c in outcome.observed.container_ids)
    route = proxy.call(driver.state_dir, {"op": "get"})["routes"]["svc-1"]
    assert len(route["backends"]) == 2
    assert again.observed.url
    for _ in range(6):
        assert httpx.get(again.observed.url).status_code == 200
    # busybox httpd -v logs each request; one was its health check, the rest came through the
    # proxy, which must have spread the six over both replicas.
    for cid in again.observed.container_ids:
        out = subprocess.run(
            [*PODMAN_BASE, "logs", cid], capture_output=True, text=True, check=True
        )
        assert (out.stdout + out.stderr).count("response:200") >= 3, cid


def test_a_new_driver_finds_its_workloads_after_a_restart_and_the_proxy_comes_back(
    driver: PodmanDriver, example_image: str, tmp_path: Path
) -> None:
    live = driver.deploy(desired(example_image, "dep-1"), health_timeout=20)
    other = driver.deploy(
        desired(example_image, "dep-9", service_id="svc-2", service_name="api"), health_timeout=20
    )
    assert live.healthy and other.healthy and live.observed.url
    # The API process dies: the proxy lives on in its own session, so the service still answers.
    assert httpx.get(live.observed.url).status_code == 200
    pid = int((driver.state_dir / proxy.PID_NAME).read_text())
    os.kill(pid, signal.SIGKILL)

    restarted = PodmanDriver(driver.state_dir, scope=driver.scope)
    found = {o.deployment_id: o for o in restarted.observe()}

    assert set(found) == {"dep-1", "dep-9"}
    assert found["dep-1"].service_id == "svc-1" and found["dep-1"].tenant == "acme"
    assert found["dep-1"].url == live.observed.url
    assert found["dep-1"].container_ids == live.observed.container_ids
    assert httpx.get(live.observed.url).status_code == 200
    # Another scope (another API on this host) sees none of them.
    stranger = PodmanDriver(tmp_path / "other", scope=f"t{uuid.uuid4().hex[:10]}")
    assert stranger.observe() == []
    stranger.remove("dep-1")
    assert exists(live.observed.container_ids[0])
    stranger.close()


def test_containers_without_pier_labels_are_never_touched(
    driver: PodmanDriver, example_image: str
) -> None:
    name = f"pier-{driver.scope}-web-dep-1-0-unlabelled"
    subprocess.run(
        [
            *PODMAN_BASE,
            "create",
            "--name",
            name,
            "--label",
            f"{LABEL_DEPLOYMENT}=dep-1",
            example_image,
        ],
        capture_output=True,
        check=True,
    )
    try:
        assert driver.observe() == []
        driver.remove("dep-1")
        assert exists(name)
    finally:
        subprocess.run([*PODMAN_BASE, "rm", "-f", name], capture_output=True, check=False)


def test_an_idle_proxy_exits_and_comes_back_on_the_same_port(
    tmp_path: Path, example_image: str
) -> None:
    scope = f"t{uuid.uuid4().hex[:10]}"
    driver = PodmanDriver(tmp_path / "runtime", scope=scope, proxy_idle_exit=1)
    try:
        live = driver.deploy(desired(example_image, "dep-1"), health_timeout=20)
        assert live.healthy and live.observed.url
        pid = int((driver.state_dir / proxy.PID_NAME).read_text())
        time.sleep(3)
        assert Path(f"/proc/{pid}").exists(), "a proxy with a live backend must stay"
        # Its containers vanish behind its back (a test run's cleanup, `podman rm`).
        remove_scope(scope)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{pid}").exists(), "an idle proxy must exit by itself"

        again = driver.deploy(desired(example_image, "dep-2"), health_timeout=20)
        assert again.healthy and again.observed.url == live.observed.url
        assert httpx.get(again.observed.url).status_code == 200
    finally:
        remove_scope(scope)
        driver.shutdown_proxy()


def test_a_port_taken_between_check_and_run_is_replaced_by_another(
    driver: PodmanDriver, example_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real_allocate = ports.allocate
    handed: list[int] = []

    def allocate(exclude: Any = (), **kw: Any) -> int:
        # The first port handed out is one another process grabbed after the free-check.
        port = taken if not handed else real_allocate(exclude, **kw)
        handed.append(port)
        return port

    monkeypatch.setattr(ports, "allocate", allocate)
    try:
        outcome = driver.deploy(desired(example_image, "dep-1"), health_timeout=20)
    finally:
        squatter.close()

    assert outcome.healthy, outcome.error
    assert handed[0] == taken and outcome.observed.host_port not in (None, taken)
    assert len(driver.observe()) == 1


def test_removing_the_routed_deployment_falls_back_to_one_still_running(
    driver: PodmanDriver, example_image: str
) -> None:
    # A crash between the switch and the store update: the API still records dep-1 as current
    # and its reconciliation removes dep-2, which the proxy already routes to.
    first = driver.deploy(
        desired(example_image, "dep-1", env={"GREETING": "v1"}), health_timeout=20
    )
    second = driver.deploy(
        desired(example_image, "dep-2", env={"GREETING": "v2"}), health_timeout=20
    )
    assert first.observed.url and second.observed.url == first.observed.url
    assert httpx.get(first.observed.url).text.strip() == "v2"

    driver.remove("dep-2")

    assert httpx.get(first.observed.url).text.strip() == "v1"
    route = proxy.call(driver.state_dir, {"op": "get"})["routes"]["svc-1"]
    assert route["deployment_id"] == "dep-1"
    driver.stop("dep-1")
    assert httpx.get(first.observed.url).status_code == 502


def test_a_stolen_service_port_moves_the_service_to_a_new_stable_url(
    driver: PodmanDriver, example_image: str
) -> None:
    live = driver.deploy(desired(example_image, "dep-1"), health_timeout=20)
    assert live.healthy and live.observed.url
    # Another program takes the service's port while no proxy runs (say, after a reboot).
    driver.shutdown_proxy()
    time.sleep(0.3)
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", int(live.observed.url.rsplit(":", 1)[1])))
    squatter.listen()
    try:
        outcome = driver.deploy(desired(example_image, "dep-2"), health_timeout=20)
        assert outcome.healthy and outcome.observed.url not in (None, live.observed.url)
        assert httpx.get(outcome.observed.url).status_code == 200
    finally:
        squatter.close()


def test_a_deploy_the_proxy_cannot_route_leaves_nothing_behind(
    driver: PodmanDriver, example_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: object) -> str:
        raise proxy.ProxyError("the service proxy did not start; see proxy.log")

    monkeypatch.setattr(driver, "_route", refuse)
    outcome = driver.deploy(desired(example_image, "dep-1"), health_timeout=20)

    assert not outcome.healthy and "proxy did not start" in outcome.error
    assert driver.observe() == []
