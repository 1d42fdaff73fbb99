"""The infra invoke tasks: thin wrappers that turn failures into one-line `Exit`s."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from invoke.context import Context
from invoke.exceptions import Exit
from pulumi import automation as auto

import tasks as root_tasks
from stacks.infra import automation
from stacks.tasks import infra


def test_plan_and_drift_are_top_level_verbs() -> None:
    names = set(root_tasks.ns.task_names)
    assert {"plan", "drift", "infra.up", "infra.preview", "infra.outputs"} <= names
    # Each verb is listed once: the top-level ones are not repeated under `infra.`.
    assert not {"infra.plan", "infra.drift"} & names


def test_plan_task_writes_the_picture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    infra.plan(Context(), env="staging", out=str(tmp_path))
    assert (tmp_path / "topology.svg").stat().st_size > 1000
    assert "pool run (1 Firewall, 1 PlacementGroup, 2 Server)" in capsys.readouterr().out


def test_plan_task_bad_config_is_one_line_exit(tmp_path: Path) -> None:
    with pytest.raises(Exit) as caught:
        infra.plan(Context(), env=str(tmp_path / "missing.yaml"))
    assert "no such stack config file" in str(caught.value.message)


def test_drift_without_pulumi_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(Exit) as caught:
        infra.drift(Context(), env="prod")
    assert caught.value.code != 0
    assert "get.pulumi.com" in str(caught.value.message)


@pytest.mark.parametrize(("clean", "fails"), [(True, False), (False, True)])
def test_drift_exit_code_follows_the_preview(
    monkeypatch: pytest.MonkeyPatch, clean: bool, fails: bool
) -> None:
    seen: dict[str, Any] = {}

    def preview(env: str, **kwargs: Any) -> bool:
        seen.update(env=env, **kwargs)
        return clean

    monkeypatch.setattr(automation, "preview", preview)
    if fails:
        with pytest.raises(Exit, match="differs from the program"):
            infra.drift(Context(), env="prod")
    else:
        infra.drift(Context(), env="prod")
    assert seen == {"env": "prod", "expect_no_changes": True}


def test_outputs_task_masks_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stack_outputs = {
        "zone_id": auto.OutputValue("z", secret=False),
        "tok": auto.OutputValue("hunter2", secret=True),
    }
    monkeypatch.setattr(automation, "_stack_outputs", lambda env: stack_outputs)
    infra.outputs(Context(), env="prod")
    out = capsys.readouterr().out
    assert '"zone_id": "z"' in out and "hunter2" not in out and "[secret]" in out
