"""The main job: `invoke up` (env local by default, or staging/prod) and `invoke down`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import Task, task
from rich.console import Console

from stacks.deployer import local_up
from stacks.deployer.runtime.podman import DEFAULT_SCOPE
from stacks.tasks import infra

ENVS = ("local", "staging", "prod")


def _state(state_dir: str) -> local_up.LocalState:
    root = Path(state_dir) if state_dir else local_up.DEFAULT_STATE_DIR
    return local_up.LocalState(root, scope=os.environ.get("PIER_RUNTIME_SCOPE", DEFAULT_SCOPE))


@task(
    help={
        "env": "local (default: API + podman on this machine), staging or prod (Pulumi)",
        "port": f"port of the local API (default {local_up.DEFAULT_API_PORT}; another free one "
        "is picked if it is taken)",
        "state_dir": "where the local environment keeps its files (default .pier/local)",
    }
)
def up(
    c: Context, env: str = "local", port: int = local_up.DEFAULT_API_PORT, state_dir: str = ""
) -> None:
    """Stand up an environment; local: start the API, deploy an example, print its URL."""
    if env not in ENVS:
        raise Exit(f"up: unknown env {env!r}; choose one of {', '.join(ENVS)}")
    # No source path column: people read these lines, not debug them.
    console = Console(log_path=False)
    if env != "local":
        # The same operation, progress and one-line errors as `invoke infra.up`.
        infra.up(c, env)
        return
    state = _state(state_dir)
    try:
        with console.status("Starting") as status:

            def step(message: str) -> None:
                status.update(f"{message}...")
                console.log(message)

            result = local_up.up_local(state, api_port=port, step=step)
    except local_up.LocalUpError as exc:
        raise Exit(f"up: {exc}") from exc
    api = "reused the running API" if result.reused_api else "started the API"
    console.print(f"[green]ok[/green] {api} at {result.api_url} (log: {state.log_file})")
    console.print(f"API key stored in {result.key_file} (mode 0600). Use it with the svc tasks:")
    console.print(f"  export PIER_API_URL={result.api_url}", markup=False, highlight=False)
    console.print(
        f'  export PIER_API_KEY="$(cat {result.key_file})"', markup=False, highlight=False
    )
    console.print("  invoke svc.list", markup=False, highlight=False)
    console.print(f"Service URL: {result.service_url}", markup=False, highlight=False)


@task(
    help={
        "services": "also stop the local services' containers and their proxy (the next `up` "
        "starts them again)",
        "state_dir": "the local environment's directory (default .pier/local)",
    }
)
def down(c: Context, services: bool = False, state_dir: str = "") -> None:
    """Stop the local API (and with --services its containers)."""
    stopped = local_up.down_local(_state(state_dir), services=services)
    Console().print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


TOP_LEVEL: tuple[Task[Any], ...] = (up, down)
