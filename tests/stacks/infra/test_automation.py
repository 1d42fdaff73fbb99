"""The Automation API wrappers, at their seams, plus a gated run against a real `pulumi`."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from stacks.infra import automation, config


class FakeOutput:
    def __init__(self, value: Any, secret: bool = False) -> None:
        self.value = value
        self.secret = secret


class FakeStack:
    def __init__(self, preview_error: str | None = None, summary: dict[str, int] | None = None):
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.preview_error = preview_error
        self.summary = summary if summary is not None else {"same": 40}

    def up(self, **kwargs: Any) -> Any:
        self.calls.append(("up", kwargs))
        return type("R", (), {"outputs": {"lb_id": FakeOutput("cf1"), "t": FakeOutput("x", True)}})

    def preview(self, **kwargs: Any) -> Any:
        self.calls.append(("preview", kwargs))
        if self.preview_error:
            result = auto.CommandResult(stdout="", stderr=self.preview_error, code=1)
            raise auto.CommandError(result)
        return type("R", (), {"change_summary": self.summary})

    def outputs(self) -> dict[str, FakeOutput]:
        return {"zone_id": FakeOutput("z"), "tok": FakeOutput("s", True)}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {"stack": FakeStack()}
    monkeypatch.setattr(shutil, "which", lambda name: f"/opt/bin/{name}")

    def create_or_select_stack(**kwargs: Any) -> FakeStack:
        seen["kwargs"] = kwargs
        return seen["stack"]  # type: ignore[no-any-return]

    monkeypatch.setattr(auto, "create_or_select_stack", create_or_select_stack)
    return seen


def test_missing_binary_raises_with_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    calls: tuple[Callable[[], object], ...] = (
        lambda: automation.up("staging"),
        lambda: automation.outputs("prod"),
    )
    for call in calls:
        with pytest.raises(automation.PulumiNotAvailable, match="get.pulumi.com"):
            call()
    with pytest.raises(automation.PulumiNotAvailable, match="no `pulumi` binary on PATH"):
        automation.preview("staging", expect_no_changes=True)


def test_stack_and_work_dir_are_the_env_and_the_project(fake: dict[str, Any]) -> None:
    lines: list[str] = []
    outs = automation.up("prod", on_output=lines.append)
    assert fake["kwargs"] == {"stack_name": "prod", "work_dir": str(config.STACK_DIR)}
    assert (Path(fake["kwargs"]["work_dir"]) / "Pulumi.yaml").is_file()
    assert outs == {"lb_id": "cf1", "t": "x"}
    assert fake["stack"].calls == [("up", {"on_output": lines.append})]


def test_config_is_validated_before_the_engine_runs(fake: dict[str, Any]) -> None:
    with pytest.raises(config.InfraConfigError, match="no such stack config file"):
        automation.preview("qa")
    assert "kwargs" not in fake


def test_preview_reports_changes_and_drift(fake: dict[str, Any]) -> None:
    assert automation.preview("staging") is True
    assert fake["stack"].calls[-1] == (
        "preview",
        {"expect_no_changes": None, "on_output": None},
    )
    fake["stack"] = FakeStack(summary={"same": 3, "update": 1})
    assert automation.preview("staging") is False
    fake["stack"] = FakeStack(preview_error="error: no changes were expected but changes occurred")
    assert automation.preview("staging", expect_no_changes=True) is False
    assert fake["stack"].calls[-1][1]["expect_no_changes"] is True
    fake["stack"] = FakeStack(preview_error="code: 255\nstderr: error: passphrase must be set")
    with pytest.raises(automation.PulumiFailed, match="passphrase must be set"):
        automation.preview("staging", expect_no_changes=True)


def test_outputs_and_masked_outputs(fake: dict[str, Any]) -> None:
    assert automation.outputs("prod") == {"zone_id": "z", "tok": "s"}
    assert automation.masked_outputs("prod") == {"zone_id": "z", "tok": "[secret]"}


@pytest.mark.gated
@pytest.mark.skipif(shutil.which("pulumi") is None, reason="no `pulumi` CLI on PATH")
def test_real_cli_previews_with_a_local_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A copy of the project (the CLI writes encrypted config into Pulumi.<env>.yaml), a file
    # backend and a throwaway passphrase: no account needed. Provider endpoints point at a
    # closed local port, so nothing leaves the machine.
    project = tmp_path / "infra"
    shutil.copytree(config.STACK_DIR, project, ignore=shutil.ignore_patterns("__pycache__"))
    venv = Path(sys.executable).parents[1]
    text = (project / "Pulumi.yaml").read_text().replace("../../.venv", str(venv))
    (project / "Pulumi.yaml").write_text(text)
    monkeypatch.setattr(config, "STACK_DIR", project)
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path / 'state'}")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "pier-test")
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    (tmp_path / "state").mkdir()
    stack = automation.select_stack("staging")
    token = "x" * 64
    stack.set_config("hcloud_token", auto.ConfigValue(token, secret=True))
    stack.set_config("cloudflare_api_token", auto.ConfigValue("y" * 40, secret=True))
    stack.set_config("hcloud:endpoint", auto.ConfigValue("http://127.0.0.1:9/v1"))
    stack.set_config("cloudflare:baseUrl", auto.ConfigValue("http://127.0.0.1:9/client/v4"))
    try:
        clean = automation.preview("staging")
    except automation.PulumiFailed as exc:
        assert token not in str(exc)
    else:
        assert clean is False  # an empty stack has every resource still to create
