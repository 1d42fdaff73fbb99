"""`invoke plan`: evaluate an environment under mocks, print its resource tree, draw its topology.

Credential-free and offline: the program runs against Pulumi mocks (see `dryrun.py`), so what
is printed is exactly what the real program would declare.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.tree import Tree

from stacks.common.inventory import InventoryDocument
from stacks.infra import config, outputs
from stacks.infra.dryrun import SERVER, DryRun, Registered, dry_run
from stacks.infra.topology import firewall_summary, render_svg

ROOT = Path(__file__).resolve().parents[2]
# Groups in the order a person reads the platform: shared bits, pools, DNS, Cloudflare.
GROUP_TITLES = {
    "": "shared (providers, SSH keys)",
    "network": "network",
    "ctrl": "pool ctrl",
    "ops": "pool ops",
    "build": "pool build",
    "run": "pool run",
    "dns": "PowerDNS VM",
    "apps": "Cloudflare (apps LB, ns records)",
}
SHOW_SERVERS = 12


@dataclass(frozen=True)
class PlanResult:
    env: str
    run: DryRun
    svg: Path


def default_out_dir(env: str) -> Path:
    return ROOT / ".pier" / "plan" / env


def _kind(type_token: str) -> str:
    return type_token.rsplit(":", 1)[-1]


def resource_tree(run: DryRun, inv: InventoryDocument) -> Tree:
    """Every registered resource, grouped by pool/component, with counts per kind."""
    custom = [r for r in run.resources if not r.type.startswith("pier:")]
    tree = Tree(f"[bold]{run.env}[/]: {len(run.custom())} cloud resources")
    hosts = {h.name: h for h in inv.hosts}
    by_group: dict[str, list[Registered]] = {}
    for r in custom:
        by_group.setdefault(r.group, []).append(r)
    for group, title in GROUP_TITLES.items():
        members = by_group.pop(group, [])
        if not members:
            continue
        counts = Counter(_kind(r.type) for r in members)
        summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
        branch = tree.add(f"[bold cyan]{title}[/] ({summary})")
        servers = sorted((r for r in members if r.type == SERVER), key=lambda r: _natural(r.name))
        for r in servers[:SHOW_SERVERS]:
            h = hosts.get(r.inputs["name"])
            where = f"{h.private_ip} public {h.public_ipv4}" if h else ""
            branch.add(
                f"{r.inputs['name']}  {r.inputs['serverType']}  {r.inputs['location']}  {where}"
            )
        if len(servers) > SHOW_SERVERS:
            branch.add(f"... and {len(servers) - SHOW_SERVERS} more servers")
        for r in sorted(members, key=lambda r: (r.type, r.name)):
            if r.type != SERVER:
                branch.add(f"[dim]{_kind(r.type)}[/] {r.inputs.get('name', r.name)}")
        for h in inv.hosts:
            if h.kind == "robot" and h.pool == group:
                branch.add(f"{h.name}  Robot server (not managed by Pulumi)  {h.private_ip}")
    for group, members in by_group.items():  # anything a future component adds
        tree.add(f"[bold cyan]{group}[/] ({len(members)})")
    return tree


def _natural(name: str) -> tuple[str, int]:
    head, _, tail = name.rpartition("-")
    return (head, int(tail)) if tail.isdigit() else (name, 0)


def plan(
    env_or_path: str, out_dir: Path | None = None, console: Console | None = None
) -> PlanResult:
    """Evaluate `env_or_path` (a stack name or a config file) and write its topology SVG."""
    console = console or Console()
    path = config.resolve_env(env_or_path)
    with console.status(f"evaluating {path.name} under Pulumi mocks"):
        cfg = config.load_file(path)
        run = dry_run(cfg)
    inv = InventoryDocument.model_validate(run.exports[outputs.INVENTORY])
    console.print(resource_tree(run, inv))
    target = out_dir or default_out_dir(cfg.env)
    target.mkdir(parents=True, exist_ok=True)
    svg = target / "topology.svg"
    svg.write_text(render_svg(inv, firewall_summary(cfg), cfg.apps_hostname))
    console.print(f"topology picture: {svg}")
    return PlanResult(env=cfg.env, run=run, svg=svg)
