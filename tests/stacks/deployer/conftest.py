"""Fixtures for the deployment API: real podman, real HTTP, a store per test.

`api` runs the app under uvicorn in a thread on a free 127.0.0.1 port with its own SQLite file
and its own podman scope, and removes every container of that scope afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn

from stacks.deployer.bootstrap import create_api_key
from stacks.deployer.client import PierAPIError, PierClient
from stacks.deployer.deploys import ServiceError
from stacks.deployer.main import create_app
from stacks.deployer.runtime.images import build_busybox_image, build_example_image
from stacks.deployer.runtime.podman import PodmanDriver
from stacks.deployer.settings import Settings

EXAMPLE = "localhost/pier-example:1"
BROKEN = "localhost/pier-test-broken:1"
# Starts, prints why it cannot work, and exits: a health check can never pass.
BROKEN_SCRIPT = 'echo "broken: DATABASE_URL is not set"\nexit 3\n'
PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s")


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (invoke test installs it)")
    return {
        "example": build_example_image(EXAMPLE),
        "broken": build_busybox_image(BROKEN, BROKEN_SCRIPT),
    }


def at_once(call: Callable[[], object], times: int, ok: int) -> list[tuple[int, str]]:
    """Run `call` from `times` threads started together. Per call, sorted: (`ok`, "") when it
    returned, or (status, detail) of the PierAPIError / ServiceError it raised. Asserting on the
    result in the test's own thread is what makes a wrong answer fail the test."""
    outcomes: list[tuple[int, str]] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            call()
            outcome = (ok, "")
        except (PierAPIError, ServiceError) as exc:
            outcome = (exc.status, exc.detail)
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=one) for _ in range(times)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(outcomes)


def remove_scope(scope: str) -> None:
    """Remove every container of `scope`: only what this test run created, whatever state the
    test left it in."""
    ids = subprocess.run(
        ["podman", "ps", "-aq", "--filter", f"label=pier.scope={scope}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if ids:
        subprocess.run(["podman", "rm", "-f", "-t", "0", *ids], capture_output=True, check=False)


def scope_containers(scope: str) -> list[dict[str, Any]]:
    """`podman ps -a` (JSON) of every container of `scope`, read from podman itself rather than
    through the driver under test."""
    out = subprocess.run(
        ["podman", "ps", "-a", "--format", "json", "--filter", f"label=pier.scope={scope}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    containers: list[dict[str, Any]] = json.loads(out or "[]")
    return containers


class ThreadedServer:
    """uvicorn serving an app in a background thread, stopped by `stop()`."""

    def __init__(self, app: object) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ThreadedServer:
        self.thread.start()
        wait_http(f"{self.url}/healthz")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@dataclass
class Api:
    url: str
    key: str
    other_key: str
    database_url: str
    scope: str
    driver: PodmanDriver
    client: PierClient
    other: PierClient

    def containers(self) -> list[str]:
        return [c["Names"][0] for c in scope_containers(self.scope)]


def make_settings(database_url: str, scope: str, runtime_dir: Path, **extra: object) -> Settings:
    return Settings(
        database_url=database_url,
        runtime_scope=scope,
        runtime_dir=runtime_dir,
        health_timeout=8.0,
        **extra,  # type: ignore[arg-type]
    )


@contextmanager
def running_api(database_url: str, workdir: Path) -> Iterator[Api]:
    """A real API (own store, own podman scope) with keys for tenants `acme` and `other`."""
    scope = f"t{uuid.uuid4().hex[:10]}"
    key = create_api_key(database_url, "acme", "admin")
    other_key = create_api_key(database_url, "other", "admin")
    driver = PodmanDriver(state_dir=workdir / "runtime", scope=scope)
    server = ThreadedServer(
        create_app(make_settings(database_url, scope, workdir / "runtime"), driver)
    )
    server.start()
    client, other = PierClient(server.url, key), PierClient(server.url, other_key)
    try:
        yield Api(server.url, key, other_key, database_url, scope, driver, client, other)
    finally:
        client.close()
        other.close()
        server.stop()
        remove_scope(scope)
        driver.close()


@pytest.fixture
def api(images: dict[str, str], tmp_path: Path) -> Iterator[Api]:
    with running_api(f"sqlite:///{tmp_path / 'store.db'}", tmp_path) as running:
        yield running


def _pg_bin(name: str) -> str | None:
    for d in PG_BIN_DIRS:
        if (Path(d) / name).exists():
            return str(Path(d) / name)
    return None


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A PostgreSQL server of this test run (initdb + pg_ctl as user postgres, free port)."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL 15 binaries not found (invoke test installs `postgresql`)")
    if os.geteuid() != 0:
        pytest.skip("starting PostgreSQL as user postgres needs root")
    # Outside pytest's tmp dirs: those are 0700 root, and the server runs as user postgres.
    base = Path(tempfile.mkdtemp(prefix="pier-pg-"))
    data = base / "data"
    shutil.chown(base, "postgres")
    base.chmod(0o755)
    port = free_port()
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_pg, initdb, "-D", str(data), "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off"
    subprocess.run(
        [*as_pg, pg_ctl, "-D", str(data), "-o", opts, "-l", str(base / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*as_pg, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
            check=False,
            capture_output=True,
        )


def new_pg_database(server: str) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.replace("+psycopg", "") + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{server}/{name}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    server: str = request.getfixturevalue("postgres")
    return new_pg_database(server)
