"""Hetzner firewalls: one per pool plus one for the PowerDNS VM.

The rules are computed by `rules_for` (a pure function over the validated config, so the config
model can refuse a firewall over Hetzner's rule limit before anything is declared) and turned
into `hcloud.Firewall` resources by `declare_firewall`.

Hetzner firewalls filter only the public interface; private-network traffic between nodes is
not affected, which is why cluster-internal ports need no rules here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, TypedDict, get_args

import pulumi
import pulumi_hcloud as hcloud

if TYPE_CHECKING:
    from stacks.infra.config import InfraConfig

FirewallGroup = Literal["ctrl", "ops", "build", "run", "dns"]
FIREWALL_GROUPS: tuple[FirewallGroup, ...] = get_args(FirewallGroup)
WORLD = ["0.0.0.0/0", "::/0"]


class Rule(TypedDict):
    direction: Literal["in"]
    protocol: str
    port: str | None
    source_ips: list[str]
    description: str


def _rule(protocol: str, port: str | None, sources: list[str], description: str) -> Rule:
    return {
        "direction": "in",
        "protocol": protocol,
        "port": port,
        "source_ips": sources,
        "description": description,
    }


def rules_for(cfg: InfraConfig, group: FirewallGroup) -> list[Rule]:
    """Inbound rules of the firewall that protects `group`'s servers."""
    admin = list(cfg.firewall.admin_cidrs)
    robots = [f"{r.public_ipv4}/32" for r in cfg.robot_servers]
    rules = [
        _rule("tcp", "22", admin, "SSH from admin networks only"),
        _rule("icmp", None, WORLD, "ping and path-MTU discovery"),
    ]
    if group != "dns":
        if group == "ctrl":
            # Robot servers reach the API over the vSwitch, i.e. from the private network.
            api_sources = [str(cfg.network.cidr), *admin]
            rules.append(_rule("tcp", "6443", api_sources, "k3s API: private network and admins"))
        if robots:
            # Kubelet traffic from Robot servers that addresses cloud nodes by public IP
            # (e.g. before the vSwitch route is up) is let in from exactly those servers.
            rules.append(_rule("tcp", "10250", robots, "kubelet from Robot servers"))
    if group == "run":
        ranges = list(cfg.cloudflare.ip_ranges)
        rules.append(_rule("tcp", "80", ranges, "HTTP from Cloudflare only"))
        rules.append(_rule("tcp", "443", ranges, "HTTPS from Cloudflare only"))
    if group == "build":
        rules.append(_rule("tcp", "5000", [str(cfg.network.cidr)], "registry: private only"))
    if group == "dns":
        rules.append(_rule("tcp", "53", WORLD, "DNS over TCP"))
        rules.append(_rule("udp", "53", WORLD, "DNS over UDP"))
        rules.append(_rule("tcp", "8081", [str(cfg.network.cidr)], "PowerDNS API: private only"))
    for extra in cfg.firewall.extra_rules.get(group, []):
        rules.append(_rule(extra.protocol, extra.port, list(extra.sources), extra.description))
    return rules


def declare_firewall(
    name: str,
    cfg: InfraConfig,
    group: FirewallGroup,
    opts: pulumi.ResourceOptions,
) -> hcloud.Firewall:
    return hcloud.Firewall(
        name,
        name=f"{cfg.env}-{group}",
        labels={"env": cfg.env, "pool": group, "managed-by": "pier"},
        rules=[
            hcloud.FirewallRuleArgs(
                direction=r["direction"],
                protocol=r["protocol"],
                port=r["port"],
                source_ips=r["source_ips"],
                description=r["description"],
            )
            for r in rules_for(cfg, group)
        ],
        opts=opts,
    )
