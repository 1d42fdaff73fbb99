"""invoke tasks for the nodes area: the Ansible inventory and growing the run pool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import Task, task
from rich.console import Console

from stacks.nodes import inventory as inv
from stacks.nodes import stack_config
from stacks.nodes.add_run_node import AddRunNodeError, Options
from stacks.nodes.add_run_node import add_run_node as run_add


@task(
    help={
        "env": "environment (stack) whose inventory to refresh, e.g. staging",
        "from_file": "read a saved `pulumi stack output --json` (or a bare document) "
        "instead of asking Pulumi",
    }
)
def inventory(c: Context, env: str = "", from_file: str = "") -> None:
    """Refresh ansible/inventory/generated/<env>.yml from the infra stack's outputs."""
    if not env:
        raise Exit("nodes.inventory: --env is required (e.g. --env staging)")
    try:
        if not from_file:
            stack_config.config_path(env)  # an unknown env fails here, before Pulumi loads
        path, doc = inv.refresh(env, from_file=Path(from_file) if from_file else None)
    except (inv.InventorySourceError, stack_config.StackConfigError) as exc:
        raise Exit(f"nodes.inventory: {exc}") from exc
    except Exception as exc:  # e.g. PulumiNotAvailable: its message says how to install it
        raise Exit(f"nodes.inventory: could not read the stack outputs: {exc}") from exc
    Console().print(f"wrote {path} ({len(doc.hosts)} hosts)")


@task(
    help={
        "env": "environment to grow, e.g. staging (its stacks/infra/Pulumi.<env>.yaml)",
        "name": "name for the new node (a DNS label); default <env>-run-<n>",
        "dry_run": "print every step and change nothing",
        "from_step": "resume at this step (1-7) after a failure; the failure message says which",
    }
)
def add_run_node(
    c: Context, env: str = "", name: str = "", dry_run: bool = False, from_step: int = 0
) -> None:
    """Add a run node: stack config, pulumi up, inventory, SSH, playbook, Ready, LB origin."""
    # Optional in the signature only so `invoke add-run-node --help` is not taken as the env.
    if not env:
        raise Exit("add-run-node: --env is required (e.g. --env staging)")
    opts = Options(env=env, name=name or None, dry_run=dry_run, from_step=from_step or None)
    try:
        run_add(opts)
    except AddRunNodeError as exc:
        raise Exit(f"add-run-node: {exc}") from exc


TOP_LEVEL: tuple[Task[Any], ...] = (add_run_node,)
