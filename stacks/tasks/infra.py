"""invoke tasks for the infra area: `plan` and `drift` (top level), `infra.up|preview|outputs`.

Thin wrappers: the work is done by `stacks.infra.plan` and `stacks.infra.automation`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import Task, task
from rich.console import Console

from stacks.infra import automation
from stacks.infra.config import InfraConfigError

# What a stack operation reports as one sentence: no CLI, a failed CLI run, or a bad config file.
STACK_ERRORS = (automation.PulumiNotAvailable, automation.PulumiFailed, InfraConfigError)
ENV_HELP = "environment: staging, prod, or a path to a Pulumi.<env>.yaml-style config file"


def _console() -> Console:
    return Console(highlight=False)


@task(
    name="plan",
    help={"env": ENV_HELP, "out": "directory for the topology picture (default .pier/plan/<env>)"},
)
def plan(c: Context, env: str = "staging", out: str = "") -> None:
    """Dry-run an environment under Pulumi mocks: resource tree by pool and a topology SVG."""
    # Imported here: the provider SDKs take seconds to import, which every `invoke` call
    # (even `invoke --list`) would pay otherwise.
    from stacks.infra import plan as infra_plan

    try:
        infra_plan.plan(env, Path(out) if out else None, _console())
    except InfraConfigError as exc:
        raise Exit(f"plan: {exc}") from exc


@task(help={"env": "stack to check: staging or prod"})
def drift(c: Context, env: str = "staging") -> None:
    """Preview a live stack expecting no changes; fails when it drifted from the program."""
    console = _console()
    try:
        with console.status(f"pulumi preview --expect-no-changes ({env})"):
            clean = automation.preview(env, expect_no_changes=True)
    except STACK_ERRORS as exc:
        raise Exit(f"drift: {exc}") from exc
    if not clean:
        raise Exit(
            f"drift: stack {env} differs from the program; see `invoke infra.preview --env {env}`, "
            f"then converge with `invoke infra.up --env {env}`"
        )
    console.print(f"drift: {env} matches the program")


def _stream(console: Console) -> Any:
    return lambda line: console.print(line.rstrip("\n"), markup=False)


@task(help={"env": "stack: staging or prod"})
def up(c: Context, env: str = "staging") -> None:
    """Create or update an environment's infrastructure (pulumi up via the Automation API)."""
    console = _console()
    try:
        outs = automation.up(env, on_output=_stream(console))
    except STACK_ERRORS as exc:
        raise Exit(f"infra.up: {exc}") from exc
    console.print(f"infra.up: {env} done, {len(outs)} outputs (`invoke infra.outputs --env {env}`)")


@task(help={"env": "stack: staging or prod"})
def preview(c: Context, env: str = "staging") -> None:
    """Show what `infra.up` would change (pulumi preview via the Automation API)."""
    console = _console()
    try:
        clean = automation.preview(env, on_output=_stream(console))
    except STACK_ERRORS as exc:
        raise Exit(f"infra.preview: {exc}") from exc
    console.print(f"infra.preview: {env} {'has no changes' if clean else 'has changes (above)'}")


@task(help={"env": "stack: staging or prod"})
def outputs(c: Context, env: str = "staging") -> None:
    """Print a stack's outputs as JSON (secret outputs masked)."""
    try:
        shown = automation.masked_outputs(env)
    except STACK_ERRORS as exc:
        raise Exit(f"infra.outputs: {exc}") from exc
    print(json.dumps(shown, indent=2, sort_keys=True))  # noqa: T201 - the task's output


TOP_LEVEL: tuple[Task[Any], ...] = (plan, drift)
