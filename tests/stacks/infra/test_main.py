"""`__main__.py` as the Pulumi engine runs it: config from the engine, tokens, build, export."""

from __future__ import annotations

import json
import runpy
from collections.abc import Iterator
from typing import Any

import pulumi
import pytest

from stacks.infra import config
from stacks.infra.dryrun import SERVER, InfraMocks, RecordingMonitor
from tests.stacks.infra.conftest import minimal_raw

MAIN = config.STACK_DIR / "__main__.py"


def _engine_config(raw: dict[str, Any]) -> dict[str, str]:
    """Config as the engine hands it over: namespaced keys, structured values JSON-encoded."""
    out = {
        f"{config.PROJECT}:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()
    }
    out[f"{config.PROJECT}:hcloud_token"] = "hc-from-config"
    out[f"{config.PROJECT}:cloudflare_api_token"] = "cf-from-config"
    return out


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingMonitor]:
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    monitor = RecordingMonitor(InfraMocks())
    pulumi.runtime.set_mocks(
        monitor.mocks, project=config.PROJECT, stack="mini", preview=False, monitor=monitor
    )
    yield monitor
    pulumi.runtime.set_all_config({})


def _run_main(raw: dict[str, Any]) -> None:
    secret = [f"{config.PROJECT}:hcloud_token", f"{config.PROJECT}:cloudflare_api_token"]
    pulumi.runtime.set_all_config(_engine_config(raw), secret)

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def program() -> None:
        runpy.run_path(str(MAIN), run_name="__main__")

    program()


def test_main_declares_the_environment_with_secret_tokens(engine: RecordingMonitor) -> None:
    _run_main(minimal_raw())
    servers = [r for r in engine.registered if r.type == SERVER]
    assert sorted(s.name for s in servers) == [
        "mini-build-1",
        "mini-ctrl-1",
        "mini-dns",
        "mini-run-1",
    ]
    [hcloud] = [r for r in engine.registered if r.type == "pulumi:providers:hcloud"]
    assert hcloud.inputs["token"] == "hc-from-config" and "token" in hcloud.secret_inputs


def test_main_stops_on_bad_config_with_one_sentence(engine: RecordingMonitor) -> None:
    raw = minimal_raw()
    raw["pools"]["ctrl"]["count"] = 4
    with pytest.raises(pulumi.RunError, match=r"^Pulumi.mini.yaml: pools.ctrl.count: 4 is even"):
        _run_main(raw)
    assert engine.registered == []


def test_main_refuses_config_of_another_stack(engine: RecordingMonitor) -> None:
    raw = minimal_raw()
    raw["env"] = "prod"
    with pytest.raises(pulumi.RunError, match="env: 'prod' does not match the stack name 'mini'"):
        _run_main(raw)
    assert engine.registered == []
