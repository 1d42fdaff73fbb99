"""add-run-node's orchestration: real config edit, inventory, SSH probe and subprocesses, with
stand-ins for pulumi, kubectl and ansible-playbook (the e2e test runs the real playbook)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from stacks.nodes import add_run_node as arn
from stacks.nodes import stack_config
from stacks.nodes.add_run_node import AddRunNodeError, Options, StepFailed, Toolchain
from tests.stacks.nodes import standins
from tests.stacks.nodes.sample import STAGING, write_stack

ROOT = Path(__file__).resolve().parents[3]


class World:
    """One env on disk (stack config, ansible dir) plus stand-ins that all succeed."""

    def __init__(self, tmp: Path, ssh_port: int) -> None:
        self.tmp = tmp
        self.stacks_dir = tmp / "stacks"
        self.config = write_stack(self.stacks_dir)
        self.ansible_dir = tmp / "ansible"
        (self.ansible_dir / "playbooks").mkdir(parents=True)
        (self.ansible_dir / "playbooks" / "add-run-node.yml").write_text("---\n")
        self.inventory_dir = tmp / "generated"
        self.kubeconfig = tmp / "kubeconfig"
        self.kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
        self.pulumi = standins.FakePulumi(
            "staging",
            self.stacks_dir,
            # The nodes these tests add answer SSH on the local banner server.
            overrides={name: {"public_ipv4": "127.0.0.1"} for name in ("staging-run-3", "edge-a")},
        )
        self.ansible_cmd, self.ansible_record = standins.ansible(tmp)
        self.opts = Options(
            env="staging",
            stacks_dir=self.stacks_dir,
            ansible_dir=self.ansible_dir,
            inventory_dir=self.inventory_dir,
            ssh_port=ssh_port,
            ssh_timeout=5,
            ready_timeout=5,
            poll_interval=0.05,
        )
        self.console = Console(record=True, width=200, force_terminal=False)

    def tools(self, **changes: Any) -> Toolchain:
        base = Toolchain(
            pulumi_up=self.pulumi.up,
            pulumi_outputs=self.pulumi.outputs,
            ansible_playbook=self.ansible_cmd,
            kubectl=standins.kubectl(self.tmp, ["staging-run-3", "edge-a"], ready_after=2),
            kubeconfig=str(self.kubeconfig),
        )
        return replace(base, **changes)

    def run(self, tools: Toolchain | None = None, **opts: Any) -> arn.Result:
        return arn.add_run_node(replace(self.opts, **opts), tools or self.tools(), self.console)

    def output(self) -> str:
        return self.console.export_text()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with standins.ssh_banner_server() as port:
        yield World(tmp_path, port)


def test_full_run_does_all_seven_steps_in_order(world: World) -> None:
    result = world.run()
    assert result.steps_run == [1, 2, 3, 4, 5, 6, 7]
    assert (result.name, result.ansible_host, result.public_ipv4) == (
        "staging-run-3",
        "127.0.0.1",
        "127.0.0.1",
    )
    assert stack_config.node_names("staging", world.stacks_dir)["run"][-1] == "staging-run-3"
    # Without --name only the count changes: no `names` list is written out.
    assert world.config.read_text() == STAGING.replace("count: 2   #", "count: 3   #")
    assert world.pulumi.calls == ["up"]  # outputs of `up` are reused for inventory and LB
    inventory = (world.inventory_dir / "staging.yml").read_text()
    assert "staging-run-3:" in inventory
    [call] = standins.json_lines(world.ansible_record)
    assert call["cwd"] == str(world.ansible_dir)
    assert call["argv"] == [
        "-i",
        str(world.inventory_dir / "staging.yml"),
        "playbooks/add-run-node.yml",
        "--limit",
        "staging-run-3",
    ]
    out = world.output()
    for number, title in arn.TITLES.items():
        assert f"[{number}/7] {title}" in out
    assert "SSH-2.0-OpenSSH_9.2p1 standin" in out
    assert "ok=3 changed=1" in out
    assert "+ hcloud:index:Server  created" in out  # pulumi's progress is shown
    assert "staging-run-3 is a Ready run node and an LB origin" in out


def test_dry_run_prints_every_step_and_changes_nothing(world: World) -> None:
    def refuse(*_: Any) -> Any:
        raise AssertionError("a dry run must not call pulumi")

    tools = world.tools(
        pulumi_up=refuse, pulumi_outputs=refuse, ansible_playbook=["false"], kubectl=["false"]
    )
    result = world.run(tools, dry_run=True, name="edge-a")
    assert result.steps_run == []
    assert world.config.read_text() == STAGING
    assert not world.inventory_dir.exists()
    assert not world.ansible_record.exists()
    out = world.output()
    for number, title in arn.TITLES.items():
        assert f"[{number}/7] {title}" in out
    assert "set the run pool's count 2 -> 3" in out
    assert "new node edge-a (listing existing nodes under `names`)" in out
    assert "--limit edge-a" in out
    assert "Dry run: nothing was changed." in out


def _break(world: World, step: int, monkeypatch: pytest.MonkeyPatch) -> Toolchain:
    """Tools (and, for step 1, the file system) under which exactly `step` fails."""
    tools = world.tools()
    if step == 1:

        def full_disk(path: Path, text: str, *, keep_mode: bool = False) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(stack_config, "atomic_write_text", full_disk)
    elif step == 2:
        world.pulumi.fail_with = "error: hcloud: server limit reached"
    elif step == 3:
        world.pulumi.omit_host = "staging-run-3"
    elif step == 4:
        world.opts = replace(world.opts, ssh_port=standins.free_port(), ssh_timeout=0.3)
    elif step == 5:
        tools = replace(tools, ansible_playbook=standins.ansible(world.tmp, code=2)[0])
    elif step == 6:
        tools = replace(
            tools, kubectl=standins.kubectl(world.tmp, ["staging-run-3"], ready_after=10**6)
        )
        world.opts = replace(world.opts, ready_timeout=0.3)
    elif step == 7:
        world.pulumi.drop_origin = "staging-run-3"
    return tools


CAUSES = {
    1: "No space left on device",
    2: "server limit reached",
    3: "staging-run-3 is not a run host in the stack's inventory output",
    4: "no SSH banner from 127.0.0.1:",
    5: "ansible-playbook exited 2",
    6: "node staging-run-3 not Ready within 0.3s (last: Ready=False)",
    7: "public IPv4 127.0.0.1 is not among the LB origins",
}


@pytest.mark.parametrize("step", sorted(CAUSES))
def test_failure_names_the_step_and_resume_completes_with_one_node(
    world: World, step: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    good_opts = world.opts
    with pytest.raises(StepFailed) as info:
        world.run(_break(world, step, monkeypatch))
    message = str(info.value)
    assert info.value.step == step
    assert message.startswith(f"step {step}/7 ({arn.TITLES[step]}) failed: ")
    assert CAUSES[step] in message
    resume = f"invoke add-run-node --env staging --name staging-run-3 --from-step {step}"
    assert message.endswith(f"Fix the cause, then resume with: {resume}")
    assert (
        world.config.read_text() == STAGING
        if step == 1
        else "count: 3" in (world.config.read_text())
    )

    # Fix the cause and run the printed command's flags.
    monkeypatch.undo()
    world.pulumi.fail_with = world.pulumi.drop_origin = world.pulumi.omit_host = None
    world.opts = good_opts
    flags = re.findall(r"--(\S+) (\S+)", resume)
    args = {k.replace("-", "_"): v for k, v in flags}
    result = world.run(name=args["name"], from_step=int(args["from_step"]))
    assert result.steps_run == list(range(step, 8))
    assert stack_config.node_names("staging", world.stacks_dir)["run"] == [
        "staging-run-1",
        "staging-run-2",
        "staging-run-3",
    ]
    # The resume command names the default node, which needs no `names` list either.
    assert world.config.read_text() == STAGING.replace("count: 2   #", "count: 3   #")


def test_resume_from_step_1_is_idempotent(world: World) -> None:
    world.run(name="edge-a")
    once = world.config.read_text()
    result = world.run(name="edge-a", from_step=1)
    assert result.steps_run == [1, 2, 3, 4, 5, 6, 7]
    assert world.config.read_text() == once
    assert "edge-a already in" in world.output()


def test_resume_without_name_continues_with_the_newest_run_node(world: World) -> None:
    world.run(name="edge-a")
    result = world.run(from_step=6)
    assert (result.name, result.steps_run) == ("edge-a", [6, 7])
    assert world.pulumi.calls == ["up", "outputs"]


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        ({"env": "nope"}, "unknown env 'nope'"),
        ({"name": "Edge_A"}, "--name 'Edge_A' is not a valid DNS label"),
        ({"name": "staging-run-1"}, "--name 'staging-run-1' is already a node of env 'staging'"),
        ({"from_step": 9}, "--from-step must be 1-7, not 9"),
        (
            {"from_step": 4, "name": "ghost"},
            "'ghost' is not run node in .*: start from step 1",
        ),
    ],
)
def test_bad_flags_fail_before_anything_is_touched(
    world: World, opts: dict[str, Any], message: str
) -> None:
    with pytest.raises(AddRunNodeError, match=message) as info:
        world.run(**opts)
    assert not isinstance(info.value, StepFailed)
    assert "\n" not in str(info.value)
    assert world.config.read_text() == STAGING
    assert world.pulumi.calls == []
    assert not world.inventory_dir.exists()


def test_missing_kubeconfig_says_what_to_set(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    with pytest.raises(StepFailed, match="step 6/7 .* KUBECONFIG is not set"):
        world.run(world.tools(kubeconfig=None))


def test_missing_playbook_fails_step_5(world: World) -> None:
    (world.ansible_dir / "playbooks" / "add-run-node.yml").unlink()
    with pytest.raises(StepFailed, match=r"step 5/7 .*add-run-node.yml does not exist"):
        world.run()


def test_default_toolchain_runs_the_installed_ansible_playbook() -> None:
    # invoke from the venv does not put the venv on PATH: the default must still find it.
    [command] = Toolchain().ansible_playbook
    result = subprocess.run([command, "--version"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "ansible-playbook [core" in result.stdout


def test_ctrl_c_during_a_step_still_says_how_to_resume(world: World) -> None:
    def interrupted(env: str, on_output: Any = None) -> Any:
        raise KeyboardInterrupt

    with pytest.raises(StepFailed) as info:
        world.run(world.tools(pulumi_up=interrupted))
    assert str(info.value).startswith("step 2/7 (pulumi up (infra stack)) failed: interrupted")
    assert info.value.resume.endswith("--name staging-run-3 --from-step 2")


def test_a_default_name_taken_meanwhile_moves_to_the_next(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another operator adds staging-run-3 between our checks and our edit (under the lock).
    real_plan = stack_config.plan_run_node

    def plan_then_race(env: str, name: str | None, stacks_dir: Path) -> Any:
        planned = real_plan(env, name, stacks_dir)
        stack_config.add_run_node(env, None, stacks_dir)
        return planned

    monkeypatch.setattr(stack_config, "plan_run_node", plan_then_race)
    world.pulumi.overrides["staging-run-4"] = {"public_ipv4": "127.0.0.1"}
    (world.tmp / "k").mkdir()
    result = world.run(world.tools(kubectl=standins.kubectl(world.tmp / "k", ["staging-run-4"])))
    assert result.name == "staging-run-4"
    assert stack_config.node_names("staging", world.stacks_dir)["run"] == [
        "staging-run-1",
        "staging-run-2",
        "staging-run-3",
        "staging-run-4",
    ]
    assert "staging-run-3 was taken meanwhile" in world.output()


def test_a_fresh_run_never_reuses_an_existing_node(world: World) -> None:
    world.run(name="edge-a")
    with pytest.raises(AddRunNodeError, match="--name 'edge-a' is already a node"):
        world.run(name="edge-a")
