"""`invoke up`'s preconditions: one clear message, non-zero exit, nothing started."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
INVOKE = Path(sys.executable).parent / "invoke"


def run_invoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(INVOKE), *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_an_unknown_env_is_refused_by_name(tmp_path: Path) -> None:
    result = run_invoke("up", "--env", "qa", "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 1
    assert "unknown env 'qa'; choose one of local, staging, prod" in result.stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.skipif(
    shutil.which("pulumi") is not None, reason="a pulumi CLI is on PATH: this checks its absence"
)
def test_cloud_env_without_pulumi_says_how_to_install_it() -> None:
    result = run_invoke("up", "--env", "staging")
    assert result.returncode == 1
    assert "pulumi" in result.stderr and "install" in result.stderr
    assert "Traceback" not in result.stderr


def test_cloud_env_with_a_bad_stack_config_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """`up --env staging|prod` reports what `infra.up` reports, a bad config file included (it
    used to escape as a traceback)."""
    from invoke.context import Context
    from invoke.exceptions import Exit

    from stacks.infra import automation
    from stacks.infra.config import InfraConfigError
    from stacks.tasks import up

    def bad_config(env: str, **_: object) -> dict[str, object]:
        raise InfraConfigError(f"Pulumi.{env}.yaml: pools.run.count", "must be at least 1")

    monkeypatch.setattr(automation, "up", bad_config)
    with pytest.raises(Exit) as caught:
        up.up(Context(), env="prod")
    assert caught.value.message == "infra.up: Pulumi.prod.yaml: pools.run.count: must be at least 1"
