"""`invoke add-run-node`: grow the run pool by one node, end to end, resumably.

Seven steps, in order: config edit, `pulumi up`, inventory refresh, SSH wait, the add-run-node
playbook limited to the new host, Kubernetes Ready, load balancer origin. The Pulumi, Ansible and
kubectl steps go through `Toolchain`, so tests can put stand-ins in place of the CLIs this
machine lacks while everything else runs for real. A failed step names itself and prints the
command that resumes from it; resuming never adds a second node.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from ruamel.yaml import YAML

from stacks.infra.outputs import LB_ORIGINS
from stacks.nodes import inventory, probes, stack_config

Outputs = Mapping[str, Any]
OnOutput = Callable[[str], None]
PLAYBOOK = "playbooks/add-run-node.yml"

TITLES: dict[int, str] = {
    1: "add the run node to the stack config",
    2: "pulumi up (infra stack)",
    3: "refresh the Ansible inventory",
    4: "wait for SSH on the new host",
    5: "run playbooks/add-run-node.yml on the new host",
    6: "wait for the node to be Ready",
    7: "check the node is a load balancer origin",
}
LAST_STEP = max(TITLES)


class AddRunNodeError(RuntimeError):
    """add-run-node cannot start or continue; the message says what to do."""


class StepFailed(AddRunNodeError):
    def __init__(self, step: int, cause: str, resume: str) -> None:
        self.step = step
        self.resume = resume
        super().__init__(
            f"step {step}/{LAST_STEP} ({TITLES[step]}) failed: {cause}\n"
            f"Fix the cause, then resume with: {resume}"
        )


# The Automation API module loads the Pulumi SDK (about a second): only the steps that talk to
# Pulumi import it, so `--dry-run`, `--help` and bad flags answer at once.
def _automation_up(env: str, on_output: OnOutput | None) -> Outputs:
    from stacks.infra import automation

    return automation.up(env, on_output=on_output)


def _automation_outputs(env: str) -> Outputs:
    from stacks.infra import automation

    return automation.outputs(env)


def _ansible_playbook() -> tuple[str, ...]:
    # `invoke` from the venv does not put the venv's bin/ on PATH; ansible-core lives there.
    beside = Path(sys.executable).parent / "ansible-playbook"
    return (str(beside),) if beside.exists() else ("ansible-playbook",)


@dataclass(frozen=True)
class Toolchain:
    """How the steps reach Pulumi, Ansible and the cluster (stand-ins go here in tests)."""

    pulumi_up: Callable[[str, OnOutput | None], Outputs] = _automation_up
    pulumi_outputs: Callable[[str], Outputs] = _automation_outputs
    ansible_playbook: Sequence[str] = field(default_factory=_ansible_playbook)
    ansible_args: Sequence[str] = ()
    ansible_env: Mapping[str, str] = field(default_factory=dict)
    kubectl: Sequence[str] = ("kubectl",)
    kubeconfig: str | None = None


@dataclass(frozen=True)
class Options:
    env: str
    name: str | None = None
    dry_run: bool = False
    # None: a fresh run. N: resume at step N (the node must already be in the config if N > 1).
    from_step: int | None = None
    stacks_dir: Path = stack_config.INFRA_DIR
    ansible_dir: Path = inventory.ANSIBLE_DIR
    inventory_dir: Path = inventory.GENERATED_DIR
    ssh_port: int = 22
    ssh_timeout: float = 600.0
    ready_timeout: float = 900.0
    poll_interval: float = 5.0


@dataclass
class Result:
    name: str
    steps_run: list[int] = field(default_factory=list)
    ansible_host: str | None = None
    public_ipv4: str | None = None


def _show(path: Path) -> str:
    """`path` relative to the working directory when it is below it: shorter progress lines."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def resume_command(env: str, name: str, step: int) -> str:
    return f"invoke add-run-node --env {env} --name {name} --from-step {step}"


def resolve_name(opts: Options) -> tuple[str, stack_config.RunNodeChange | None]:
    """Validate the flags and settle the node's name before anything is touched."""
    try:
        if opts.from_step is not None and not 1 <= opts.from_step <= LAST_STEP:
            raise AddRunNodeError(f"--from-step must be 1-{LAST_STEP}, not {opts.from_step}")
        run_names = stack_config.node_names(opts.env, opts.stacks_dir).get("run", [])
        resuming = opts.from_step is not None
        if resuming and opts.name is not None and opts.name in run_names:
            return opts.name, None  # already added by the run being resumed
        if resuming and opts.from_step != 1:
            if opts.name is None and run_names:
                return run_names[-1], None  # the newest run node: the one being added
            path = stack_config.config_path(opts.env, opts.stacks_dir)
            missing = f"{opts.name!r} is not" if opts.name else "there is no"
            raise AddRunNodeError(
                f"{missing} run node in {path}: start from step 1 (drop --from-step)"
            )
        change = stack_config.plan_run_node(opts.env, opts.name, opts.stacks_dir)
        return change.name, change
    except stack_config.StackConfigError as exc:
        raise AddRunNodeError(str(exc)) from exc


def _host_vars(inventory_file: Path, name: str) -> dict[str, Any]:
    """The new host's variables, read back from the inventory Ansible will use."""
    if not inventory_file.is_file():
        raise AddRunNodeError(f"no inventory at {inventory_file}: resume from step 3")
    data = YAML(typ="safe").load(inventory_file.read_text())
    for group in (data or {}).get("all", {}).get("children", {}).values():
        hosts = (group or {}).get("hosts") or {}
        if hosts.get(name):
            found: dict[str, Any] = hosts[name]
            return found
    raise AddRunNodeError(f"{name} is not in {inventory_file}: resume from step 3")


class _Run:
    """One add-run-node run: the state later steps read from earlier ones."""

    def __init__(
        self,
        opts: Options,
        tools: Toolchain,
        console: Console,
        name: str,
        change: stack_config.RunNodeChange | None,
    ) -> None:
        self.opts = opts
        self.tools = tools
        self.console = console
        self.name = name
        self.change = change
        self.outputs: Outputs | None = None
        self.inventory_file = inventory.inventory_path(opts.env, opts.inventory_dir)

    # --- what each step would do (dry run) -------------------------------------------------

    def describe(self, step: int) -> str:
        o = self.opts
        if step == 1:
            c = self.change
            if c is None:
                return f"{self.name} is already in the stack config: nothing to change"
            names = " (listing existing nodes under `names`)" if c.materialised_names else ""
            return (
                f"set the run pool's count {c.count_before} -> {c.count_after} in {_show(c.path)}, "
                f"new node {self.name}{names}"
            )
        if step == 2:
            return f"run `pulumi up` on the infra stack `{o.env}` and keep its outputs"
        if step == 3:
            return f"write {_show(self.inventory_file)} from the stack's inventory output"
        if step == 4:
            return f"wait up to {o.ssh_timeout:g}s for an SSH banner from {self.name}:{o.ssh_port}"
        if step == 5:
            return f"run `{shlex.join(self.playbook_command())}` in {_show(o.ansible_dir)}"
        if step == 6:
            return f"wait up to {o.ready_timeout:g}s for `kubectl get node {self.name}` to be Ready"
        return f"check the stack output `{LB_ORIGINS}` lists {self.name}'s public IPv4"

    def playbook_command(self) -> list[str]:
        return [
            *self.tools.ansible_playbook,
            "-i",
            str(self.inventory_file),
            PLAYBOOK,
            "--limit",
            self.name,
            *self.tools.ansible_args,
        ]

    # --- the steps -------------------------------------------------------------------------

    def step1(self) -> str:
        # Only the user's --name goes in: a default name is chosen again under the file lock
        # (another operator may have taken it since), and must not materialise `names`.
        # Only a resume may find the node already there; a fresh run refuses a duplicate.
        change = stack_config.add_run_node(
            self.opts.env,
            self.opts.name,
            self.opts.stacks_dir,
            existing_ok=self.opts.from_step is not None,
        )
        if not change.changed:
            return f"{change.name} already in {_show(change.path)}"
        if change.name != self.name:
            self.console.print(f"    [yellow]{self.name} was taken meanwhile[/yellow]")
            self.name = change.name
        return (
            f"{_show(change.path)}: run count {change.count_before} -> {change.count_after}, "
            f"new node {change.name}"
        )

    def step2(self) -> str:
        def show(line: str) -> None:
            self.console.print(f"    [dim]{escape(line.rstrip())}[/dim]")

        self.outputs = self.tools.pulumi_up(self.opts.env, show)
        return f"{len(self.outputs)} outputs"

    def _outputs(self) -> Outputs:
        if self.outputs is None:
            self.outputs = self.tools.pulumi_outputs(self.opts.env)
        return self.outputs

    def step3(self) -> str:
        env = self.opts.env
        doc = inventory.document_for_env(env, self._outputs(), f"stack {env} outputs")
        if self.name not in {h.name for h in doc.pool("run")}:
            raise AddRunNodeError(
                f"{self.name} is not a run host in the stack's inventory output "
                "(did `pulumi up` create it?)"
            )
        return _show(inventory.write_inventory(doc, self.opts.inventory_dir))

    def step4(self) -> str:
        host = str(_host_vars(self.inventory_file, self.name)["ansible_host"])
        with self.console.status(f"waiting for SSH on {host}:{self.opts.ssh_port}") as status:
            banner = probes.wait_for_ssh(
                host,
                self.opts.ssh_port,
                timeout=self.opts.ssh_timeout,
                interval=min(self.opts.poll_interval, 2.0),
                on_attempt=lambda last: status.update(
                    f"waiting for SSH on {host}:{self.opts.ssh_port} ({escape(last)})"
                ),
            )
        return banner

    def step5(self) -> str:
        playbook = self.opts.ansible_dir / PLAYBOOK
        if not playbook.is_file():
            raise AddRunNodeError(f"{playbook} does not exist")
        command = self.playbook_command()
        self.console.print(f"    [dim]$ {escape(shlex.join(command))}[/dim]")
        try:
            proc = subprocess.Popen(
                command,
                cwd=self.opts.ansible_dir,
                env={**os.environ, **self.tools.ansible_env},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        except FileNotFoundError as exc:
            raise AddRunNodeError(f"cannot run {command[0]!r}: {exc.strerror}") from exc
        assert proc.stdout is not None
        recap = ""
        for line in proc.stdout:
            self.console.print(f"    [dim]{escape(line.rstrip())}[/dim]", highlight=False)
            if self.name in line and "ok=" in line:
                recap = " ".join(line.split()[2:])
        code = proc.wait()
        if code != 0:
            raise AddRunNodeError(f"ansible-playbook exited {code} (its output is above)")
        return recap or "done"

    def step6(self) -> str:
        kubeconfig = self.tools.kubeconfig or os.environ.get("KUBECONFIG")
        if not kubeconfig:
            raise AddRunNodeError(
                "KUBECONFIG is not set: export KUBECONFIG=<the cluster's admin kubeconfig>"
            )
        with self.console.status(f"waiting for node {self.name} to be Ready") as status:
            probes.wait_for_node_ready(
                self.name,
                self.tools.kubectl,
                kubeconfig,
                timeout=self.opts.ready_timeout,
                interval=self.opts.poll_interval,
                on_attempt=lambda last: status.update(
                    f"waiting for node {self.name} to be Ready ({escape(last)})"
                ),
            )
        return "Ready"

    def step7(self) -> str:
        public = _host_vars(self.inventory_file, self.name).get("pier_public_ipv4")
        if not public:
            raise AddRunNodeError(f"{self.name} has no public IPv4, so it cannot be an LB origin")
        key = LB_ORIGINS
        origins = self._outputs().get(key)
        if not isinstance(origins, list):
            raise AddRunNodeError(f"the stack has no `{key}` output list")
        if public not in origins:
            raise AddRunNodeError(
                f"{self.name}'s public IPv4 {public} is not among the LB origins "
                f"{', '.join(map(str, origins)) or '(none)'}: check the infra stack's origin pool"
            )
        return f"{public} is one of {len(origins)} origins"


def add_run_node(
    opts: Options, tools: Toolchain | None = None, console: Console | None = None
) -> Result:
    """Run (or, with `dry_run`, print) the seven steps; raises `StepFailed` naming the step."""
    console = console or Console()
    tools = tools or Toolchain()
    name, change = resolve_name(opts)
    run = _Run(opts, tools, console, name, change)
    first = opts.from_step or 1
    result = Result(name=name)
    verb = "Would add" if opts.dry_run else "Adding"
    console.print(f"[bold]{verb} run node {name} to env {opts.env}[/bold]")
    steps: dict[int, Callable[[], str]] = {
        1: run.step1,
        2: run.step2,
        3: run.step3,
        4: run.step4,
        5: run.step5,
        6: run.step6,
        7: run.step7,
    }
    for number, fn in steps.items():
        label = f"[{number}/{LAST_STEP}] {TITLES[number]}"
        if number < first:
            console.print(f"[dim]{label}: skipped (resuming at step {first})[/dim]")
            continue
        if opts.dry_run:
            console.print(f"{label}\n    would {escape(run.describe(number))}")
            continue
        console.print(f"[bold cyan]{label}[/bold cyan]")
        started = time.monotonic()
        try:
            summary = fn()
        except KeyboardInterrupt as exc:
            raise StepFailed(
                number, "interrupted", resume_command(opts.env, run.name, number)
            ) from exc
        except Exception as exc:  # any failure in a step is reported as that step's failure
            cause = str(exc) or type(exc).__name__
            raise StepFailed(number, cause, resume_command(opts.env, run.name, number)) from exc
        result.steps_run.append(number)
        result.name = run.name  # step 1 may have had to pick the next free default name
        elapsed = time.monotonic() - started
        console.print(f"    [green]ok[/green] {escape(summary)} [dim]({elapsed:.1f}s)[/dim]")
    if not opts.dry_run and result.steps_run and result.steps_run[-1] == LAST_STEP:
        host = _host_vars(run.inventory_file, run.name)
        result.ansible_host = str(host.get("ansible_host"))
        result.public_ipv4 = host.get("pier_public_ipv4")
        console.print(f"[bold green]{run.name} is a Ready run node and an LB origin[/bold green]")
    elif opts.dry_run:
        console.print("[bold]Dry run: nothing was changed.[/bold]")
    return result
