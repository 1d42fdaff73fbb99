"""kill -9 the API at random points during deploys, restart it, and check nothing is lost.

The API runs as its own uvicorn process. SIGKILL goes to its whole process group (the API and
any podman command it was running, as systemd does when a unit dies) on even trials, and to the
API process alone on odd ones (its podman command then finishes on its own, possibly after the
restarted API has reconciled; the API's periodic sweep removes what it leaves).
After each restart the store and podman must agree: every container belongs to the current
deployment of a stored service, every service that should run answers on its URL, no deploy is
left "deploying", every create that was answered exists exactly once, every answered delete
is gone.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from stacks.deployer.bootstrap import create_api_key
from stacks.deployer.client import PierAPIError, PierClient
from stacks.deployer.db import make_engine, session_factory
from stacks.deployer.models import Deployment, Service
from tests.stacks.deployer.conftest import (
    EXAMPLE,
    free_port,
    remove_scope,
    scope_containers,
    wait_http,
)

pytestmark = [pytest.mark.podman, pytest.mark.slow]
TRIALS = 22
ROOT = Path(__file__).resolve().parents[3]


class ApiProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--factory",
                    "stacks.deployer.main:create_app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_http(f"{self.url}/healthz", timeout=60)

    def kill9(self, *, group: bool = True) -> None:
        assert self.proc is not None
        if group:
            os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill9()


def podman_state(scope: str) -> dict[str, str]:
    """deployment id -> container state, for every container of `scope`."""
    return {c["Labels"]["pier.deployment"]: c["State"] for c in scope_containers(scope)}


@pytest.fixture
def crash_env(images: dict[str, str], tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    scope = f"crash{os.getpid()}{random.randrange(10**6)}"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "PIER_RUNTIME_SCOPE": scope,
        "PIER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "PIER_HEALTH_TIMEOUT": "8",
        "PIER_SWEEP_INTERVAL": "0.5",
    }
    try:
        yield env, scope
    finally:
        remove_scope(scope)


def test_kill9_during_deploys_loses_nothing(
    crash_env: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    env, scope = crash_env
    key = create_api_key(env["DATABASE_URL"], "acme", "crash")
    api = ApiProcess(env, tmp_path / "api.log")
    # A new sequence of operations and kill points each run; PIER_CRASH_SEED replays one.
    seed = int(os.environ.get("PIER_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    acknowledged: set[str] = set()  # creates answered 201
    deleted: set[str] = set()  # deletes answered 200
    delete_sent: set[str] = set()  # deletes sent: may be finished by the next start
    ops_seen: list[str] = []
    existing: list[str] = []  # in the store after the last restart, answered or not
    try:
        api.start()
        for trial in range(TRIALS):
            choices = ["create", "redeploy", "redeploy", "rollback", "stop", "start", "delete"]
            op = rng.choice(choices if existing else ["create"])
            name = f"s{trial}" if op == "create" else rng.choice(existing)
            ops_seen.append(op)

            def run(op: str = op, name: str = name) -> None:
                with PierClient(api.url, key, timeout=30) as client:
                    try:
                        if op == "create":
                            spec = {"name": name, "image": EXAMPLE, "health_path": "/healthz"}
                            client.create(spec)
                            acknowledged.add(name)
                        elif op == "redeploy":
                            client.redeploy(name)
                        elif op == "rollback":
                            client.rollback(name)
                        elif op == "stop":
                            client.stop(name)
                        elif op == "start":
                            client.start(name)
                        else:
                            delete_sent.add(name)
                            client.delete(name)
                            deleted.add(name)
                    except PierAPIError:
                        pass  # killed mid-request, or a refused rollback: both expected

            worker = threading.Thread(target=run)
            worker.start()
            if trial % 4 == 0:
                # Every fourth kill comes once the operation has finished (a crash at rest), so
                # every run also has answered operations whose results must survive.
                worker.join(timeout=60)
            else:
                time.sleep(rng.uniform(0.0, 1.5))
            # Odd trials kill the API process alone: a podman command it started may then
            # finish after the next start's reconciliation, which the running sweep cleans up.
            api.kill9(group=trial % 2 == 0)
            worker.join(timeout=30)
            api.start()
            existing = check_consistent(
                env["DATABASE_URL"], scope, acknowledged - delete_sent, deleted, f"{trial}/{seed}"
            )
    finally:
        api.stop()
    assert len(set(ops_seen)) >= 4, f"too few kinds of operation: {ops_seen} (seed {seed})"
    assert key not in (tmp_path / "api.log").read_text(), "the API key leaked into the API log"
    assert acknowledged, "no create finished before its kill: the trials never saw a live service"


def check_consistent(
    database_url: str, scope: str, kept: set[str], deleted: set[str], trial: str
) -> list[str]:
    """`kept`: answered creates never sent a delete; `deleted`: answered deletes."""
    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            services = list(session.scalars(select(Service)))
            deploying = session.scalars(
                select(Deployment).where(Deployment.status == "deploying")
            ).all()
            current = {
                s.current_deployment_id: s for s in services if s.current_deployment_id is not None
            }
            wanted = {d: s.desired_state for d, s in current.items()}
            current_urls = {
                d.id: d.url
                for d in session.scalars(select(Deployment).where(Deployment.id.in_(current)))
            }
    finally:
        engine.dispose()
    names = [s.name for s in services]
    where = f"after trial/PIER_CRASH_SEED {trial}"
    assert len(names) == len(set(names)), f"duplicated service {where}: {names}"
    assert not deploying, f"deploys left 'deploying' {where}"
    missing = kept - set(names)
    assert not missing, f"acknowledged services lost {where}: {missing}"
    assert not (deleted & set(names)), f"deleted services came back {where}"
    assert all(s.status in {"live", "failed", "stopped"} for s in services), where
    containers = podman_state(scope)
    deadline = time.monotonic() + 10
    while set(containers) - set(current) and time.monotonic() < deadline:
        time.sleep(0.25)  # a late podman command's container, for the sweep to remove
        containers = podman_state(scope)
    orphans = set(containers) - set(current)
    assert not orphans, f"orphaned containers {where}: {orphans}"
    for dep_id, svc in current.items():
        if wanted[dep_id] == "stopped":
            assert svc.status == "stopped", f"{svc.name} should be stopped {where}"
            assert containers.get(dep_id) != "running", f"{svc.name} still running {where}"
            continue
        assert containers.get(dep_id) == "running", f"{svc.name} not running {where}"
        url = current_urls[dep_id]
        assert url is not None and httpx.get(url, timeout=5).status_code == 200, svc.name
    return sorted(names)
