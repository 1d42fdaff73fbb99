"""The nightly drift workflow runs `invoke drift` for both stacks with credentials from secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

WORKFLOW = Path(__file__).resolve().parents[3] / ".github" / "workflows" / "drift.yml"


def _load() -> dict[str, Any]:
    doc: dict[str, Any] = YAML(typ="safe").load(WORKFLOW.read_text())
    return doc


def test_nightly_and_manual_triggers() -> None:
    triggers = _load()["on"]
    assert triggers["schedule"][0]["cron"].split()[2:] == ["*", "*", "*"]
    assert "workflow_dispatch" in triggers


def test_runs_drift_for_staging_and_prod_with_secret_credentials() -> None:
    job = _load()["jobs"]["drift"]
    assert job["strategy"]["matrix"]["env"] == ["staging", "prod"]
    assert job["strategy"]["fail-fast"] is False
    [step] = [s for s in job["steps"] if "invoke drift" in s.get("run", "")]
    assert step["run"] == '.venv/bin/invoke drift --env "${{ matrix.env }}"'
    for key in ("PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE", "VAULT_ADDR", "VAULT_TOKEN"):
        assert step["env"][key] == f"${{{{ secrets.{key} }}}}", key
    # The CLI is installed before the drift step, and nothing else gets the secrets.
    runs = [s.get("run", "") for s in job["steps"]]
    assert any("get.pulumi.com" in r for r in runs[: runs.index(step["run"])])
    assert [s for s in job["steps"] if "secrets." in str(s)] == [step]
