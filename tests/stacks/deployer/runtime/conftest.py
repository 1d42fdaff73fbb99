"""Real podman containers for the runtime tests, each run under its own driver scope."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stacks.deployer.runtime.images import build_busybox_image, build_example_image
from stacks.deployer.runtime.podman import PODMAN_BASE, PodmanDriver
from tests.stacks.deployer.conftest import remove_scope

# Writes a line to its log, then exits: a deploy whose container dies before it is healthy.
CRASHING_SCRIPT = 'echo "crashing on purpose: missing DATABASE_URL"\nexit 3\n'


def _need_podman() -> None:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (invoke test installs it)")


@pytest.fixture(scope="session")
def example_image() -> Iterator[str]:
    _need_podman()
    tag = f"localhost/pier-test-example:{uuid.uuid4().hex[:8]}"
    yield build_example_image(tag)
    subprocess.run([*PODMAN_BASE, "rmi", "-f", tag], capture_output=True, check=False)


@pytest.fixture(scope="session")
def crashing_image() -> Iterator[str]:
    _need_podman()
    tag = f"localhost/pier-test-crash:{uuid.uuid4().hex[:8]}"
    yield build_busybox_image(tag, CRASHING_SCRIPT)
    subprocess.run([*PODMAN_BASE, "rmi", "-f", tag], capture_output=True, check=False)


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[PodmanDriver]:
    _need_podman()
    scope = f"t{uuid.uuid4().hex[:10]}"
    drv = PodmanDriver(tmp_path / "runtime", scope=scope)
    yield drv
    remove_scope(scope)
    drv.shutdown_proxy()
