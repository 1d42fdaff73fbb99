"""invoke tasks for services on the deployment API (`svc.*` and the top-level `deploy FILE`).

The API URL and key come from $PIER_API_URL/$PIER_API_KEY or `~/.config/pier/client.toml`
(`url = "..."`, `api_key = "..."`). `svc.admin-key` creates the first key straight in the store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import Task, task
from rich.console import Console
from rich.table import Column, Table

from stacks.deployer.client import ClientConfigError, PierAPIError, PierClient
from stacks.deployer.service_defs import DefinitionError, deploy_definition
from stacks.deployer.settings import Settings

console = Console()


@contextmanager
def _client(name: str | None = None) -> Iterator[PierClient]:
    if name is not None and name.startswith("-"):
        # invoke hands a missing positional NAME the next token, even `--help`.
        raise Exit(
            f"svc: {name!r} is not a service name: give the NAME first, e.g. "
            "`invoke svc.get example`; `invoke --help svc.get` shows a task's options"
        )
    try:
        client = PierClient.from_config()
    except ClientConfigError as exc:
        raise Exit(f"svc: {exc}") from exc
    try:
        yield client
    except PierAPIError as exc:
        if exc.status == 0:  # no answer at all
            raise Exit(f"svc: {exc.detail}; is the API running (`invoke up`)?") from exc
        raise Exit(f"svc: the API answered {exc.status}: {exc.detail}") from exc
    finally:
        client.close()


def _show(service: dict[str, Any]) -> None:
    current = service.get("current_deployment") or {}
    console.print(
        f"[bold]{service['name']}[/bold] {service['status']} "
        f"image={service['image']} url={service.get('url') or '-'} "
        f"deployment={current.get('seq', '-')}"
    )
    if service["status"] == "failed" or (current and current.get("status") == "failed"):
        console.print("[red]the deployment failed[/red]: see `invoke svc.logs` for its output")


def _action(name: str, what: str, call: Callable[[PierClient, str], dict[str, Any]]) -> None:
    with _client(name) as client, console.status(f"{what} {name}..."):
        result = call(client, name)
    _show(result)


def _parse_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise Exit(f"svc: --env {pair!r} must look like NAME=value")
        env[key] = value
    return env


@task(
    help={
        "name": "service name (a DNS label)",
        "image": "image with an explicit tag or digest, e.g. localhost/app:1.2",
        "port": "port the app listens on (it also gets $PORT)",
        "env": "NAME=value, repeatable",
        "replicas": "number of containers",
        "health_path": "HTTP path that answers 200 when the app is ready",
        "cpu": "CPU limit in cores, e.g. 0.5",
        "memory_mb": "memory limit in MiB",
    },
    iterable=["env"],
)
def create(
    c: Context,
    name: str,
    image: str,
    port: int = 8080,
    env: list[str] | None = None,
    replicas: int = 1,
    health_path: str = "/",
    cpu: str = "",
    memory_mb: int = 0,
) -> None:
    """Create a service and wait for its first deploy."""
    spec: dict[str, Any] = {
        "name": name,
        "image": image,
        "port": port,
        "env": _parse_env(env or []),
        "replicas": replicas,
        "health_path": health_path,
    }
    if cpu:
        # invoke has no float flags; the API names the problem if this is out of range.
        try:
            spec["cpu"] = float(cpu)
        except ValueError as exc:
            raise Exit(f"svc: --cpu {cpu!r} must be a number of cores, e.g. 0.5") from exc
    if memory_mb:
        spec["memory_mb"] = memory_mb
    with _client() as client, console.status(f"deploying {name}..."):
        result = client.create(spec)
    _show(result)


@task(
    name="list",
    help={
        "limit": "show one page of at most this many services (1-500) instead of all",
        "cursor": "start after this service name (the `next` a page printed)",
    },
)
def list_(c: Context, limit: str = "", cursor: str = "") -> None:
    """List this tenant's services (all of them, or one page with --limit/--cursor)."""
    next_cursor: str | None = None
    page_size: int | None = None
    if limit:
        try:
            page_size = int(limit)
        except ValueError as exc:
            raise Exit(f"svc: --limit {limit!r} must be a whole number from 1 to 500") from exc
    with _client() as client:
        if page_size is None and not cursor:
            services = client.list()
        else:
            page = client.list_page(limit=page_size, cursor=cursor or None)
            services, next_cursor = page["services"], page.get("next_cursor")
    urls = [s.get("url") or "-" for s in services]
    # URLs and names are copied from here: never cut them; a long image name folds instead.
    table = Table(
        Column("name", no_wrap=True),
        "status",
        Column("image", overflow="fold"),
        Column("url", no_wrap=True, min_width=max(map(len, urls), default=3)),
        "deployment",
    )
    for s in services:
        current = s.get("current_deployment") or {}
        table.add_row(
            s["name"], s["status"], s["image"], s.get("url") or "-", str(current.get("seq", "-"))
        )
    console.print(table)
    if next_cursor is not None:
        more = f" --limit {page_size}" if page_size else ""
        console.print(f"more: invoke svc.list{more} --cursor {next_cursor}")


@task(help={"name": "service name"})
def get(c: Context, name: str) -> None:
    """Show one service as JSON (status, URL, current and previous deployment)."""
    with _client(name) as client:
        console.print_json(json.dumps(client.get(name)))


@task(help={"name": "service name", "tail": "number of lines"})
def logs(c: Context, name: str, tail: int = 100) -> None:
    """Print the last lines of a service's output."""
    with _client(name) as client:
        console.print(client.logs(name, tail), markup=False, highlight=False)


@task(help={"name": "service name"})
def redeploy(c: Context, name: str) -> None:
    """Deploy a service again; the running deployment serves until the new one is healthy."""
    _action(name, "redeploying", lambda cl, n: cl.redeploy(n))


@task(help={"name": "service name"})
def rollback(c: Context, name: str) -> None:
    """Go back to the previous healthy deployment."""
    _action(name, "rolling back", lambda cl, n: cl.rollback(n))


@task(help={"name": "service name"})
def stop(c: Context, name: str) -> None:
    """Stop a service's containers (kept for `svc.start`)."""
    _action(name, "stopping", lambda cl, n: cl.stop(n))


@task(help={"name": "service name"})
def start(c: Context, name: str) -> None:
    """Start a stopped service and wait until it is healthy."""
    _action(name, "starting", lambda cl, n: cl.start(n))


@task(help={"name": "service name"})
def restart(c: Context, name: str) -> None:
    """Stop and start a service."""
    _action(name, "restarting", lambda cl, n: cl.restart(n))


@task(help={"name": "service name"})
def delete(c: Context, name: str) -> None:
    """Delete a service and its containers."""
    with _client(name) as client:
        client.delete(name)
    console.print(f"deleted {name}")


@task(
    name="admin-key",
    help={
        "tenant": "tenant the key belongs to",
        "name": "a label for the key",
        "database_url": "store to write to (default: $DATABASE_URL or the local SQLite file)",
    },
)
def admin_key(
    c: Context, tenant: str = "admin", name: str = "admin", database_url: str = ""
) -> None:
    """Create an API key in the store and print it once (it is stored only as a hash)."""
    url = database_url or Settings().database_url
    # Imported here: it loads the store (SQLAlchemy, Alembic), which no other verb needs.
    from stacks.deployer.bootstrap import create_api_key

    try:
        key = create_api_key(url, tenant, name)
    except ValueError as exc:
        raise Exit(f"svc.admin-key: {exc}") from exc
    console.print(f"API key for tenant {tenant!r} (shown once, store it now):")
    print(key)  # noqa: T201 - plain on stdout so scripts can capture it


@task(help={"file": "a service definition file (TOML)"})
def deploy(c: Context, file: str) -> None:
    """Create or redeploy the service described by a TOML definition file."""
    with _client() as client:
        try:
            results = deploy_definition(client, Path(file), on_progress=console.print)
        except DefinitionError as exc:
            raise Exit(f"deploy: {exc}") from exc
        # A failed redeploy leaves the old deployment serving, so look at the newest one.
        failed = [
            r["name"] for r in results if client.deployments(r["name"])[0]["status"] == "failed"
        ]
    for result in results:
        _show(result)
    if failed:
        raise Exit(
            f"deploy: {', '.join(failed)} failed the health check (the previous deployment, "
            "if any, still serves); see `invoke svc.logs --name NAME`"
        )


TOP_LEVEL: tuple[Task[Any], ...] = (deploy,)
