"""`invoke up` on the local environment: the API on this machine, an example deployed through it.

Steps: install podman, start (or reuse) the API in the background with SQLite and the podman
driver, build the example image offline, create (or reuse) an API key, deploy the example
through the API and check its URL answers. Everything lives under one state directory
(`.pier/local/` by default) so `invoke down` and the svc tasks find it again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from stacks.common import system_packages
from stacks.deployer.runtime import ports
from stacks.deployer.runtime.images import EXAMPLE_HEALTH_PATH, build_example_image
from stacks.deployer.runtime.podman import DEFAULT_SCOPE, PodmanDriver
from stacks.deployer.settings import LOCAL_DIR, ROOT

DEFAULT_STATE_DIR = LOCAL_DIR
DEFAULT_API_PORT = 8600
EXAMPLE_SERVICE = "example"
EXAMPLE_TENANT = "default"
API_START_TIMEOUT = 60.0
_API_MODULE = "stacks.deployer.main:create_app"


class LocalUpError(RuntimeError):
    """A step of the local bring-up failed; the message says what to do next."""


@dataclass(frozen=True)
class LocalState:
    """Where the local environment keeps its files."""

    root: Path
    scope: str = DEFAULT_SCOPE

    @property
    def pid_file(self) -> Path:
        return self.root / "api.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "api.log"

    @property
    def url_file(self) -> Path:
        return self.root / "api-url"

    @property
    def key_file(self) -> Path:
        return self.root / "api-key"

    @property
    def runtime_dir(self) -> Path:
        return self.root / "runtime"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.root / 'deployer.db'}"


@dataclass(frozen=True)
class UpResult:
    api_url: str
    service_url: str
    key_file: Path
    reused_api: bool


Step = Callable[[str], None]


def up_local(
    state: LocalState,
    *,
    api_port: int = DEFAULT_API_PORT,
    install: bool = True,
    step: Step = lambda _msg: None,
) -> UpResult:
    """Bring the local environment up; `step` is told each step as it starts."""
    state.root.mkdir(parents=True, exist_ok=True)
    if install:
        step("Installing podman and the packages it needs")
        try:
            system_packages.ensure_podman()
        except system_packages.SystemPackageError as exc:
            raise LocalUpError(str(exc)) from exc
    step("Starting the deployment API")
    api_url, reused = ensure_api(state, api_port)
    step("Building the example image (offline, busybox)")
    image = build_example_image()
    step("Creating an API key")
    key = ensure_api_key(state, api_url)
    step(f"Deploying the example service through the API ({api_url})")
    service_url = deploy_example(api_url, key, image)
    step(f"Checking {service_url} answers")
    _check_answers(service_url)
    return UpResult(api_url, service_url, state.key_file, reused)


def api_pid(state: LocalState) -> int | None:
    """The pid of this state directory's running API, if one runs."""
    try:
        pid = int(state.pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    # The pid may have been reused by an unrelated process since the API wrote it.
    return pid if _API_MODULE.encode() in cmdline else None


def ensure_api(state: LocalState, port: int) -> tuple[str, bool]:
    """Reuse the running API if it answers, else start one; returns (URL, reused)."""
    if api_pid(state) is not None and state.url_file.exists():
        url = state.url_file.read_text().strip()
        if _answers(f"{url}/healthz"):
            return url, True
        stop_api(state)
    if not ports.is_free(port):
        port = ports.allocate()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": state.database_url,
        "PIER_RUNTIME_DIR": str(state.runtime_dir),
        "PIER_RUNTIME_SCOPE": state.scope,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    with state.log_file.open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                _API_MODULE,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=str(ROOT),
            env=env,
            # Its own session: the API outlives this `invoke up` and its terminal.
            start_new_session=True,
        )
    state.pid_file.write_text(f"{process.pid}\n")
    deadline = time.monotonic() + API_START_TIMEOUT
    delay = 0.02
    while not _answers(f"{url}/healthz"):
        if process.poll() is not None:
            raise LocalUpError(
                f"the API exited with code {process.returncode} while starting; "
                f"see {state.log_file}:\n{_tail(state.log_file)}"
            )
        if time.monotonic() > deadline:
            stop_api(state)
            raise LocalUpError(
                f"the API did not answer within {API_START_TIMEOUT:g}s; see {state.log_file}"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)
    state.url_file.write_text(f"{url}\n")
    return url, False


def ensure_api_key(state: LocalState, api_url: str) -> str:
    """The stored key if the API still accepts it, else a fresh one stored 0600."""
    from stacks.deployer.bootstrap import create_api_key
    from stacks.deployer.client import PierAPIError, PierClient

    if state.key_file.exists():
        key = state.key_file.read_text().strip()
        try:
            with PierClient(api_url, key) as client:
                client.whoami()
            return key
        except PierAPIError:
            pass  # revoked or from an older store: make a new one
    key = create_api_key(state.database_url, EXAMPLE_TENANT, "invoke-up")
    # Created 0600 before the key is written, so it is never readable by others.
    state.key_file.unlink(missing_ok=True)
    fd = os.open(state.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{key}\n")
    return key


def deploy_example(api_url: str, key: str, image: str) -> str:
    """Create the example service, or redeploy it if it exists but is not live; returns its URL."""
    from stacks.deployer.client import PierAPIError, PierClient

    spec = {
        "name": EXAMPLE_SERVICE,
        "image": image,
        "port": 8080,
        "health_path": EXAMPLE_HEALTH_PATH,
        "env": {"GREETING": "hello from pier"},
        "cpu": 0.5,
        "memory_mb": 64,
    }
    with PierClient(api_url, key) as client:
        try:
            service = client.get(EXAMPLE_SERVICE)
        except PierAPIError as exc:
            if exc.status != 404:
                raise LocalUpError(f"the API refused GET {EXAMPLE_SERVICE}: {exc}") from exc
            service = client.create(spec)
        else:
            url = service.get("url")
            if service.get("status") != "live" or not url or not _answers(str(url)):
                service = client.redeploy(EXAMPLE_SERVICE, spec)
    if service.get("status") != "live" or not service.get("url"):
        raise LocalUpError(
            f"the example service is {service.get('status')}; see its logs with "
            f"`invoke svc.logs {EXAMPLE_SERVICE}`"
        )
    return str(service["url"])


def stop_api(state: LocalState, *, timeout: float = 10.0) -> bool:
    """Stop this state directory's API; returns whether one was running."""
    pid = api_pid(state)
    state.pid_file.unlink(missing_ok=True)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    if Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGKILL)
        _reap(pid)
    return True


def down_local(state: LocalState, *, services: bool = False) -> list[str]:
    """Stop the API and, with `services`, every container and the proxy of this environment.

    The store keeps the services, so the next `up` starts them again. Returns what was stopped.
    """
    stopped = ["API"] if stop_api(state) else []
    if services and state.runtime_dir.exists():
        driver = PodmanDriver(state.runtime_dir, scope=state.scope)
        for observed in driver.observe():
            driver.stop(observed.deployment_id)
            stopped.append(f"deployment {observed.deployment_id}")
        driver.shutdown_proxy()
    return stopped


def _reap(pid: int) -> None:
    # When this process started the API (tests), collect it so it does not linger as a zombie.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _check_answers(url: str) -> None:
    try:
        response = httpx.get(url, timeout=5)
    except httpx.HTTPError as exc:
        raise LocalUpError(f"{url} does not answer ({type(exc).__name__})") from exc
    if response.status_code != 200:
        raise LocalUpError(f"{url} answered {response.status_code}, expected 200")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
