"""`invoke up` / `invoke down` on the local environment, for real: API process, podman, HTTP."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stacks.deployer import local_up
from stacks.deployer.runtime import ports
from stacks.deployer.runtime.podman import PodmanDriver
from tests.stacks.deployer.conftest import remove_scope
from tests.stacks.deployer.url_load import UrlLoad

pytestmark = [pytest.mark.podman, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
INVOKE = Path(sys.executable).parent / "invoke"


@pytest.fixture
def state(tmp_path: Path) -> Iterator[local_up.LocalState]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (invoke test installs it)")
    st = local_up.LocalState(tmp_path / "local", scope=f"up{uuid.uuid4().hex[:10]}")
    yield st
    local_up.stop_api(st)
    remove_scope(st.scope)
    if st.runtime_dir.exists():
        PodmanDriver(st.runtime_dir, scope=st.scope).shutdown_proxy()


def test_invoke_up_prints_a_service_url_that_answers_and_never_the_key(
    state: local_up.LocalState,
) -> None:
    port = ports.allocate()
    result = subprocess.run(
        [str(INVOKE), "up", "--port", str(port), "--state-dir", str(state.root)],
        cwd=ROOT,
        env={**os.environ, "PIER_RUNTIME_SCOPE": state.scope, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"Service URL: (http://127\.0\.0\.1:\d+)", result.stdout)
    assert found, result.stdout
    response = httpx.get(found.group(1))
    assert response.status_code == 200 and response.text.strip() == "hello from pier"
    key = state.key_file.read_text().strip()
    assert stat.S_IMODE(state.key_file.stat().st_mode) == 0o600
    assert key and key not in result.stdout + result.stderr
    assert key not in state.log_file.read_text()
    assert f"cat {state.key_file}" in result.stdout
    assert state.url_file.read_text().strip() == f"http://127.0.0.1:{port}"


def test_up_again_reuses_everything_and_down_then_up_brings_the_service_back(
    state: local_up.LocalState,
) -> None:
    first = local_up.up_local(state, api_port=ports.allocate())
    pid = local_up.api_pid(state)
    assert not first.reused_api and pid is not None

    again = local_up.up_local(state, api_port=ports.allocate())
    assert again.reused_api and local_up.api_pid(state) == pid
    assert again.service_url == first.service_url and again.api_url == first.api_url
    assert again.key_file.read_text() == first.key_file.read_text()

    stopped = local_up.down_local(state, services=True)
    assert "API" in stopped and any(s.startswith("deployment ") for s in stopped)
    assert local_up.api_pid(state) is None and not Path(f"/proc/{pid}").exists()
    with pytest.raises(httpx.HTTPError):
        httpx.get(first.service_url)

    # The store kept the service: the new API's reconciliation starts it on the same URL.
    back = local_up.up_local(state, api_port=ports.allocate(), install=False)
    assert not back.reused_api
    assert back.service_url == first.service_url
    assert httpx.get(back.service_url).text.strip() == "hello from pier"


def test_a_broken_api_start_names_the_log(state: local_up.LocalState) -> None:
    state.root.mkdir(parents=True)
    # A directory where the SQLite file should be: the API cannot open its store.
    (state.root / "deployer.db").mkdir()
    with pytest.raises(local_up.LocalUpError, match=re.escape(str(state.log_file))):
        local_up.up_local(state, api_port=ports.allocate(), install=False)
    assert local_up.api_pid(state) is None


def test_a_redeploy_through_the_api_fails_no_request_on_the_service_url(
    state: local_up.LocalState,
) -> None:
    from stacks.deployer.client import PierClient

    up = local_up.up_local(state, api_port=ports.allocate(), install=False)
    with UrlLoad(up.service_url) as load:
        with PierClient(up.api_url, up.key_file.read_text().strip()) as api:
            spec = {
                "name": local_up.EXAMPLE_SERVICE,
                "image": api.get(local_up.EXAMPLE_SERVICE)["current_deployment"]["image"],
                "health_path": "/healthz",
                "env": {"GREETING": "second"},
            }
            service = api.redeploy(local_up.EXAMPLE_SERVICE, spec)
        time.sleep(0.2)

    assert service["status"] == "live" and service["url"] == up.service_url
    [answers] = load.answers
    assert load.failures == []
    assert answers[0] == "hello from pier" and answers[-1] == "second"
