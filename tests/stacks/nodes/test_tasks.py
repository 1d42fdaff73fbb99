"""The nodes invoke tasks: a few runs as a person types them (subprocess `invoke ...`: exit code,
one-line stderr), the other flag checks by calling the task in-process (an `invoke` start costs
seconds). The library behind them is tested directly."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import Task
from ruamel.yaml import YAML

from stacks.infra.outputs import INVENTORY
from stacks.nodes import inventory
from stacks.tasks import nodes
from tests.stacks.nodes.sample import document, write_stack

ROOT = Path(__file__).resolve().parents[3]
INVOKE = str(Path(sys.executable).parent / "invoke")


def _invoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [INVOKE, *args], capture_output=True, text=True, cwd=ROOT, check=False, timeout=120
    )


@pytest.fixture
def env() -> Iterator[str]:
    """A unique env name; its generated inventory (git-ignored) is removed afterwards."""
    name = f"t{secrets.token_hex(3)}"
    yield name
    inventory.inventory_path(name).unlink(missing_ok=True)


def test_inventory_from_saved_stack_output(tmp_path: Path, env: str) -> None:
    saved = tmp_path / "outputs.json"
    raw = document(env, write_stack(tmp_path / "stack", env).parent)
    saved.write_text(json.dumps({INVENTORY: raw, "lb_origins": []}))
    result = _invoke("nodes.inventory", "--env", env, "--from-file", str(saved))
    assert result.returncode == 0, result.stderr
    path = inventory.inventory_path(env)
    assert f"wrote {path} (6 hosts)" in " ".join(result.stdout.split())
    data = YAML(typ="safe").load(path.read_text())
    assert data["all"]["vars"]["pier_env"] == env
    assert f"{env}-run-2" in data["all"]["children"]["run"]["hosts"]


def _exit_message(task: Task[Any], **kwargs: Any) -> str:
    with pytest.raises(Exit) as info:
        task(Context(), **kwargs)
    assert info.value.code == 1
    message = str(info.value.message)
    assert "\n" not in message
    return message


def test_inventory_without_pulumi_says_how_to_install() -> None:
    if shutil.which("pulumi") is not None:
        pytest.skip("a pulumi CLI is installed: this checks the message given without one")
    message = _exit_message(nodes.inventory, env="staging")
    assert message.startswith("nodes.inventory: could not read the stack outputs: no `pulumi`")
    assert "install the Pulumi CLI" in message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "nodes.inventory: --env is required"),
        ({"env": "nope"}, "nodes.inventory: unknown env 'nope'"),
        ({"env": "staging", "from_file": "/nonexistent.json"}, "/nonexistent.json: no such file"),
    ],
)
def test_inventory_bad_flags(kwargs: dict[str, str], message: str) -> None:
    assert message in _exit_message(nodes.inventory, **kwargs)


def test_add_run_node_dry_run_on_the_real_stack_changes_nothing() -> None:
    stack = ROOT / "stacks" / "infra" / "Pulumi.staging.yaml"
    before = stack.read_bytes()
    result = _invoke("add-run-node", "--env", "staging", "--dry-run")
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert "Would add run node staging-run-3 to env staging" in out
    for step in range(1, 8):
        assert f"[{step}/7]" in out
    assert "Dry run: nothing was changed." in out
    assert stack.read_bytes() == before


def test_add_run_node_unknown_env_from_the_command_line() -> None:
    result = _invoke("add-run-node", "--env", "nope")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("add-run-node: unknown env 'nope'")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "add-run-node: --env is required"),
        ({"env": "staging", "name": "Bad_Name"}, "add-run-node: --name 'Bad_Name' is not a valid"),
        ({"env": "staging", "name": "staging-run-1"}, "add-run-node: --name 'staging-run-1' is"),
        ({"env": "staging", "name": "staging-run-r1"}, "duplicate node name 'staging-run-r1'"),
        ({"env": "staging", "from_step": 8}, "add-run-node: --from-step must be 1-7, not 8"),
    ],
)
def test_add_run_node_bad_flags_one_message(kwargs: dict[str, Any], message: str) -> None:
    stack = ROOT / "stacks" / "infra" / "Pulumi.staging.yaml"
    before = stack.read_bytes()
    assert message in _exit_message(nodes.add_run_node, **kwargs)
    assert stack.read_bytes() == before
