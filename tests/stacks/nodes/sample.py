"""A stack config and inventory documents for the nodes tests (valid for the infra model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stacks.nodes import stack_config

# Comments, flow mappings, quoting and key order are all things a round-trip edit must keep.
STAGING = """\
# staging: the small environment (edited by `invoke add-run-node`)
config:
  hcloud:token:
    secure: AAABAHBsYWNlaG9sZGVy
  pier-infra:env: staging
  pier-infra:domain: staging.example.net  # public zone
  pier-infra:ssh_keys:
    ops: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPlaceholderKeyForTestsOnly000000000000"
  pier-infra:network:
    cidr: 10.0.0.0/16
    cloud_subnet: 10.0.0.0/17
  pier-infra:pools:
    # control plane: keep it odd
    ctrl:
      count: 1
      server_type: cx22
      locations: [fsn1]
      ip_range: 10.0.1.0/24
    ops: {count: 1, server_type: cx22, locations: [fsn1], ip_range: 10.0.2.0/24}
    build:
      count: 1
      server_type: cpx31
      locations: [fsn1]
      ip_range: 10.0.3.0/24
    run:
      count: 2   # grows with invoke add-run-node
      server_type: cpx31
      locations:
        - fsn1
        - nbg1
      ip_range: 10.0.4.0/24
      labels:
        pier.dev/pool: run
  pier-infra:firewall:
    admin_cidrs:
      - 198.51.100.0/24
  pier-infra:cloudflare:
    account_id: "0123456789abcdef"
    zone_id: "fedcba9876543210"
    ip_ranges: [173.245.48.0/20]
"""


def write_stack(directory: Path, env: str = "staging", text: str = STAGING) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"Pulumi.{env}.yaml"
    path.write_text(text.replace("staging", env))
    return path


def document(
    env: str, stacks_dir: Path, overrides: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The inventory document the infra stack would export for the config in `stacks_dir`.

    `overrides` replaces fields of named hosts (tests point a node at a real test host).
    """
    overrides = overrides or {}
    names = stack_config.node_names(env, stacks_dir)
    hosts: list[dict[str, Any]] = []
    for p, pool in enumerate(("ctrl", "ops", "build", "run"), start=1):
        for i, name in enumerate(names.get(pool, []), start=1):
            host: dict[str, Any] = {
                "name": name,
                "pool": pool,
                "kind": "cloud",
                "public_ipv4": f"203.0.113.{p * 20 + i}",
                "private_ip": f"10.0.{p}.{i}",
                "location": "fsn1",
                "labels": {"pier.dev/pool": pool},
                "taints": (
                    [{"key": "pier.dev/pool", "value": pool, "effect": "NoSchedule"}]
                    if pool in ("ctrl", "build")
                    else []
                ),
            }
            host.update(overrides.get(name, {}))
            hosts.append(host)
    hosts.append(
        {
            "name": f"{env}-dns",
            "pool": "dns",
            "kind": "cloud",
            "public_ipv4": "203.0.113.53",
            "private_ip": "10.0.0.53",
            "location": "fsn1",
        }
    )
    return {
        "version": 1,
        "env": env,
        "domain": f"{env}.example.net",
        "network": {"cidr": "10.0.0.0/16", "cloud_subnet": "10.0.0.0/17"},
        "k3s_api_endpoint": "https://10.0.1.1:6443",
        "registry": "10.0.3.1:5000",
        "hosts": hosts,
    }
