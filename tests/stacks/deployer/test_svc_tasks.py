"""The invoke tasks (`deploy FILE`, `svc.*`) against a real API.

A few calls go through the `invoke` command line exactly as a person types them; the rest call
the task objects in-process (the same code, without paying invoke's start-up each time).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from invoke.context import Context
from invoke.exceptions import Exit
from rich.console import Console

from stacks.deployer.client import PierClient
from stacks.tasks import svc
from tests.stacks.deployer.conftest import BROKEN, EXAMPLE, Api

pytestmark = [pytest.mark.podman, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[3]
INVOKE = str(Path(sys.executable).parent / "invoke")


def definition(greeting: str, image: str = EXAMPLE) -> str:
    return (
        'name = "shop"\n'
        f"[components.web]\nimage = {image!r}\nhealth_path = '/healthz'\n"
        f"[components.web.env]\nGREETING = {greeting!r}\n"
    )


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [INVOKE, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def api_env(api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PIER_API_URL", api.url)
    monkeypatch.setenv("PIER_API_KEY", api.key)
    return dict(os.environ)


def test_deploy_file_from_the_command_line(
    api: Api, api_env: dict[str, str], tmp_path: Path
) -> None:
    file = tmp_path / "shop.toml"
    file.write_text(definition("one"))
    first = run(api_env, "deploy", str(file))
    assert first.returncode == 0, first.stderr
    assert "shop live" in first.stdout
    assert api.client.get("shop")["spec"]["env"] == {"GREETING": "one"}

    file.write_text(definition("three", image=BROKEN))
    broken = run(api_env, "deploy", str(file))
    assert broken.returncode == 1
    assert "shop failed the health check (the previous deployment, if any, still serves)" in (
        broken.stderr
    )
    listed = run(api_env, "svc.list")
    assert "shop" in listed.stdout and "live" in listed.stdout
    flags = run(
        api_env, "svc.create", "--name", "flags", "--image", EXAMPLE, "--cpu", "0.5",
        "--memory-mb", "64", "--env", "A=1", "--env", "B=2", "--health-path", "/healthz",
    )  # fmt: skip
    assert flags.returncode == 0, flags.stderr
    spec = api.client.get("flags")["spec"]
    assert (spec["cpu"], spec["memory_mb"], spec["env"]) == (0.5, 64, {"A": "1", "B": "2"})


def test_svc_tasks(
    api: Api,
    api_env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c = Context()
    file = tmp_path / "shop.toml"
    file.write_text(definition("one"))
    svc.deploy(c, str(file))
    file.write_text(definition("two"))
    svc.deploy(c, str(file))
    assert api.client.get("shop")["spec"]["env"] == {"GREETING": "two"}
    svc.rollback(c, "shop")
    assert api.client.get("shop")["spec"]["env"] == {"GREETING": "one"}
    svc.redeploy(c, "shop")
    svc.logs(c, "shop", tail=5)
    assert "serving on port" in capsys.readouterr().out
    svc.stop(c, "shop")
    assert "shop stopped" in capsys.readouterr().out
    svc.start(c, "shop")
    svc.restart(c, "shop")
    assert "shop live" in capsys.readouterr().out
    svc.get(c, "shop")
    assert '"name": "shop"' in capsys.readouterr().out
    narrow = Console(width=60, file=io.StringIO())
    wide = svc.console
    monkeypatch.setattr(svc, "console", narrow)
    svc.list_(c)
    monkeypatch.setattr(svc, "console", wide)
    # The URL is printed whole, even in a narrow table: people copy it from here.
    assert api.client.get("shop")["url"] in narrow.file.getvalue()  # type: ignore[attr-defined]
    svc.delete(c, "shop")
    with pytest.raises(Exit) as gone:
        svc.get(c, "shop")
    assert "the API answered 404: service 'shop' not found" in str(gone.value.message)

    svc.create(c, "api", EXAMPLE, env=["GREETING=cli"], health_path="/healthz", cpu="0.5")
    created = api.client.get("api")["spec"]
    assert created["env"] == {"GREETING": "cli"} and created["cpu"] == 0.5
    with pytest.raises(Exit) as bad_cpu:
        svc.create(c, "api3", EXAMPLE, cpu="lots")
    assert "--cpu 'lots' must be a number of cores" in str(bad_cpu.value.message)
    with pytest.raises(Exit) as bad_env:
        svc.create(c, "api2", EXAMPLE, env=["NOEQUALS"])
    assert "--env 'NOEQUALS' must look like NAME=value" in str(bad_env.value.message)
    with pytest.raises(Exit) as conflict:
        svc.create(c, "api", EXAMPLE)
    assert "409: service 'api' already exists" in str(conflict.value.message)


def test_bad_file_and_missing_config(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PIER_API_URL", raising=False)
    monkeypatch.delenv("PIER_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    # Not the files a local `invoke up` on this machine may have left.
    monkeypatch.setenv("PIER_LOCAL_DIR", str(tmp_path / "no-local"))
    file = tmp_path / "bad.toml"
    file.write_text(definition("x", image="app:latest"))
    no_config = run(dict(os.environ), "deploy", str(file))
    assert no_config.returncode == 1 and "set PIER_API_URL and PIER_API_KEY" in no_config.stderr

    config = tmp_path / ".config" / "pier" / "client.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'url = "{api.url}"\napi_key = "{api.key}"\n')
    with pytest.raises(Exit) as bad:
        svc.deploy(Context(), str(file))
    assert "image: ':latest' is refused" in str(bad.value.message)
    assert api.client.list() == []
    svc.list_(Context())


def test_admin_key(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    svc.admin_key(Context(), tenant="newco", name="ops", database_url=api.database_url)
    key = capsys.readouterr().out.strip().splitlines()[-1]
    with PierClient(api.url, key) as client:
        assert client.whoami()["tenant"] == "newco"
    with pytest.raises(Exit) as bad:
        svc.admin_key(Context(), tenant="Bad!", database_url=api.database_url)
    assert "must be a DNS label" in str(bad.value.message)


def test_a_flag_in_place_of_the_name_never_reaches_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    # `invoke svc.get --help` hands "--help" to the NAME positional; nothing is listening here,
    # so an attempt to call the API would fail differently.
    monkeypatch.setenv("PIER_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("PIER_API_KEY", "pier_x_y")
    for verb in (svc.get, svc.delete, svc.stop):
        with pytest.raises(Exit) as refused:
            verb(Context(), "--help")
        assert "'--help' is not a service name" in str(refused.value.message)
        assert "invoke --help svc.get" in str(refused.value.message)
