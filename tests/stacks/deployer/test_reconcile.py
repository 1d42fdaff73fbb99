"""Reconciliation on API start with the real podman driver: podman is made to match the store."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from stacks.deployer.bootstrap import create_api_key
from stacks.deployer.client import PierClient
from stacks.deployer.main import create_app
from stacks.deployer.runtime import proxy
from stacks.deployer.runtime.podman import PodmanDriver
from stacks.deployer.settings import Settings
from tests.stacks.deployer.conftest import (
    EXAMPLE,
    ThreadedServer,
    make_settings,
    remove_scope,
    scope_containers,
)

pytestmark = [pytest.mark.podman, pytest.mark.slow]


def containers(scope: str) -> dict[str, tuple[str, str]]:
    """container name -> (deployment label, state)."""
    return {
        c["Names"][0]: (c["Labels"].get("pier.deployment", ""), c["State"])
        for c in scope_containers(scope)
    }


def _api_parts(
    tmp_path: Path, tag: str, **settings_extra: object
) -> tuple[str, str, Settings, PodmanDriver]:
    """A fresh SQLite store with an admin key for tenant acme, and a podman driver on a scope of
    its own: (scope, key, settings, driver) for create_app."""
    database_url = f"sqlite:///{tmp_path / 'store.db'}"
    scope = f"{tag}{uuid.uuid4().hex[:8]}"
    key = create_api_key(database_url, "acme", "admin")
    settings = make_settings(database_url, scope, tmp_path / "runtime", **settings_extra)
    return scope, key, settings, PodmanDriver(state_dir=tmp_path / "runtime", scope=scope)


def test_restart_repairs_podman_from_the_store(images: dict[str, str], tmp_path: Path) -> None:
    scope, key, settings, driver = _api_parts(tmp_path, "rec")
    spec = {"image": EXAMPLE, "health_path": "/healthz"}
    try:
        server = ThreadedServer(create_app(settings, driver)).start()
        with PierClient(server.url, key) as client:
            lost = client.create({"name": "lost", **spec})
            halted = client.create({"name": "halted", **spec})
            client.create({"name": "paused", **spec})
            client.stop("paused")
        server.stop()

        # While the API is down: one container removed, one stopped behind its back, and a
        # labelled container the store never heard of.
        by_dep = {dep: name for name, (dep, _) in containers(scope).items()}
        subprocess.run(
            ["podman", "rm", "-f", "-t", "0", by_dep[lost["current_deployment"]["id"]]],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["podman", "stop", "-t", "0", by_dep[halted["current_deployment"]["id"]]],
            check=True,
            capture_output=True,
        )
        stray(scope, "stray")

        server = ThreadedServer(create_app(settings, driver)).start()
        try:
            with PierClient(server.url, key) as client:
                services = {s["name"]: s for s in client.list()}
                assert set(services) == {"lost", "halted", "paused"}  # no record lost
                for name in ("lost", "halted"):
                    assert services[name]["status"] == "live", name
                    assert httpx.get(services[name]["url"], timeout=5).status_code == 200
                    # Same deployment as before the restart: nothing was redeployed as new.
                    assert len(client.deployments(name)) == 1
                assert services["paused"]["status"] == "stopped"
            state = containers(scope)
            assert "pier-" + scope + "-stray" not in state
            deps = {dep for dep, _ in state.values()}
            assert deps == {s["current_deployment"]["id"] for s in services.values()}
            paused_dep = services["paused"]["current_deployment"]["id"]
            assert all(st != "running" for dep, st in state.values() if dep == paused_dep)
        finally:
            server.stop()
    finally:
        remove_scope(scope)
        driver.close()


def test_restart_reroutes_running_services_whose_url_does_not_serve_them(
    images: dict[str, str], tmp_path: Path
) -> None:
    """A container can run while its service URL answers 502: a start cut short after `podman
    start` but before the route was set (the stop had emptied it), or a route left on another
    deployment by a crash mid-switch. Once the restarted API is ready, both URLs answer 200."""
    scope, key, settings, driver = _api_parts(tmp_path, "rrt")
    spec = {"image": EXAMPLE, "health_path": "/healthz"}
    try:
        server = ThreadedServer(create_app(settings, driver)).start()
        with PierClient(server.url, key) as client:
            cut = client.create({"name": "cut", **spec})
            moved = client.create({"name": "moved", **spec})
        server.stop()
        cut_dep, moved_dep = (s["current_deployment"]["id"] for s in (cut, moved))
        # `cut` was stopped (its route emptied), then a start op died right after `podman start`.
        driver.stop(cut_dep)
        subprocess.run(
            ["podman", "start", *[n for n, (d, _) in containers(scope).items() if d == cut_dep]],
            check=True,
            capture_output=True,
        )
        port = int(moved["url"].rsplit(":", 1)[1])
        service_ids = {o.deployment_id: o.service_id for o in driver.observe()}
        proxy.call(
            driver.state_dir,
            {
                "op": "set",
                "service_id": service_ids[moved_dep],
                "port": port,
                "deployment_id": "gone",
                "backends": [1],
            },
        )
        assert httpx.get(cut["url"], timeout=5).status_code == 502
        assert httpx.get(moved["url"], timeout=5).status_code == 502
        assert {st for _, st in containers(scope).values()} == {"running"}

        server = ThreadedServer(create_app(settings, driver)).start()
        try:
            # No waiting: ready means serving.
            for name, url in (("cut", cut["url"]), ("moved", moved["url"])):
                assert httpx.get(url, timeout=5).status_code == 200, name
            with PierClient(server.url, key) as client:
                services = {s["name"]: s for s in client.list()}
            assert services["cut"]["status"] == services["moved"]["status"] == "live"
            assert services["cut"]["current_deployment"]["id"] == cut_dep
            assert services["moved"]["current_deployment"]["id"] == moved_dep
        finally:
            server.stop()
    finally:
        remove_scope(scope)
        driver.close()


def stray(scope: str, name: str) -> None:
    subprocess.run(
        [
            "podman", "run", "-d", "--name", f"pier-{scope}-{name}",
            "--label", "pier.managed=true", "--label", f"pier.scope={scope}",
            "--label", f"pier.deployment={name}", "--label", f"pier.service-id={name}",
            "--label", "pier.tenant=acme", "--label", "pier.host-port=1",
            EXAMPLE, "sleep", "60",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip


def test_running_api_sweeps_late_orphans(images: dict[str, str], tmp_path: Path) -> None:
    """A container that appears after start-up reconciliation (a podman command of the previous,
    killed API finishing late) is removed by the periodic sweep; live services are untouched."""
    scope, key, settings, driver = _api_parts(tmp_path, "swp", sweep_interval=0.5)
    server = ThreadedServer(create_app(settings, driver)).start()
    try:
        with PierClient(server.url, key) as client:
            live = client.create({"name": "web", "image": EXAMPLE, "health_path": "/healthz"})
            stray(scope, "late")
            deadline = time.monotonic() + 20
            while f"pier-{scope}-late" in containers(scope) and time.monotonic() < deadline:
                time.sleep(0.2)
            state = containers(scope)
            assert f"pier-{scope}-late" not in state
            assert {dep for dep, _ in state.values()} == {live["current_deployment"]["id"]}
            assert httpx.get(live["url"], timeout=5).status_code == 200
    finally:
        server.stop()
        remove_scope(scope)
        driver.close()
