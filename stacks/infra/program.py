"""The infra program: declares every resource from a validated config and returns the exports.

`__main__.py` calls `build` under the Pulumi engine; `dryrun.py` calls it under mocks for
`invoke plan`, the tests and the benchmark, so all of them exercise exactly this code.
"""

from __future__ import annotations

from ipaddress import ip_network
from typing import Any

import pulumi
import pulumi_cloudflare as cloudflare
import pulumi_hcloud as hcloud

from stacks.common.inventory import Host, InventoryDocument, Network
from stacks.infra import outputs
from stacks.infra.config import InfraConfig
from stacks.infra.dns_vm import DnsVm
from stacks.infra.loadbalancer import AppsLoadBalancer, Origin
from stacks.infra.network import PrivateNetwork
from stacks.infra.pools import CloudNode, NodePool
from stacks.infra.tokens import ProviderTokens

REGISTRY_PORT = 5000
K3S_API_PORT = 6443


def _host(cfg: InfraConfig, node: CloudNode, public_ipv4: str | None) -> dict[str, Any]:
    pool = getattr(cfg.pools, node.pool)
    return {
        "name": node.name,
        "pool": node.pool,
        "kind": "cloud",
        "public_ipv4": public_ipv4 or None,
        "private_ip": str(node.private_ip),
        "location": node.location,
        "labels": {"pier.dev/pool": node.pool, "pier.dev/env": cfg.env, **pool.labels},
        "taints": [t.model_dump() for t in pool.parsed_taints()],
    }


def _robot_hosts(cfg: InfraConfig) -> list[dict[str, Any]]:
    hosts = []
    for robot in cfg.robot_servers:
        pool = getattr(cfg.pools, robot.pool)
        hosts.append(
            {
                "name": robot.name,
                "pool": robot.pool,
                "kind": "robot",
                "public_ipv4": str(robot.public_ipv4),
                "private_ip": str(robot.private_ip),
                "location": robot.location,
                "labels": {
                    "pier.dev/pool": robot.pool,
                    "pier.dev/env": cfg.env,
                    "pier.dev/kind": "robot",
                    **pool.labels,
                },
                "taints": [t.model_dump() for t in pool.parsed_taints()],
            }
        )
    return hosts


def k3s_api_endpoint(cfg: InfraConfig) -> str:
    return f"https://{cfg.pools.ctrl.node_ip(1)}:{K3S_API_PORT}"


def registry_address(cfg: InfraConfig) -> str:
    if cfg.pools.build.count:
        return f"{cfg.pools.build.node_ip(1)}:{REGISTRY_PORT}"
    robot = next(r for r in cfg.robot_servers if r.pool == "build")
    return f"{robot.private_ip}:{REGISTRY_PORT}"


def inventory_document(
    cfg: InfraConfig, nodes: list[CloudNode], public_ips: list[str], dns_ip: str | None
) -> dict[str, Any]:
    """The inventory as a JSON-able dict, validated against the shared contract on the way out."""
    net = cfg.network
    hosts = [_host(cfg, n, ip) for n, ip in zip(nodes, public_ips, strict=True)]
    hosts += _robot_hosts(cfg)
    hosts.append(
        {
            "name": cfg.dns_vm_name,
            "pool": "dns",
            "kind": "cloud",
            "public_ipv4": dns_ip or None,
            "private_ip": str(cfg.dns_vm.private_ip),
            "location": cfg.dns_vm.location,
            "labels": {"pier.dev/pool": "dns", "pier.dev/env": cfg.env},
            "taints": [],
        }
    )
    doc = InventoryDocument(
        env=cfg.env,
        domain=cfg.domain,
        network=Network(
            cidr=net.cidr,
            cloud_subnet=net.cloud_subnet,
            vswitch_subnet=net.vswitch_subnet,
            vswitch_id=net.vswitch_id,
            vswitch_vlan=net.vswitch_vlan,
            vswitch_gateway=net.vswitch_gateway,
        ),
        k3s_api_endpoint=k3s_api_endpoint(cfg),
        registry=registry_address(cfg),
        admin_cidrs=tuple(ip_network(c) for c in cfg.firewall.admin_cidrs),
        hosts=tuple(Host.model_validate(h) for h in hosts),
    )
    return doc.model_dump(mode="json")


def build(cfg: InfraConfig, tokens: ProviderTokens) -> dict[str, Any]:
    """Declare the whole environment; returns the stack exports keyed by `outputs` constants."""
    hcloud_provider = hcloud.Provider("hcloud", token=tokens.hcloud)
    cloudflare_provider = cloudflare.Provider("cloudflare", api_token=tokens.cloudflare)
    on_hcloud = pulumi.ResourceOptions(provider=hcloud_provider)

    ssh_keys = [
        hcloud.SshKey(
            f"ssh-{key_name}",
            name=f"{cfg.env}-{key_name}",
            public_key=public_key,
            labels={"env": cfg.env, "managed-by": "pier"},
            opts=on_hcloud,
        )
        for key_name, public_key in sorted(cfg.ssh_keys.items())
    ]
    ssh_key_ids = [k.id for k in ssh_keys]
    component_opts = pulumi.ResourceOptions(providers=[hcloud_provider])
    network = PrivateNetwork("network", cfg, component_opts)
    pools = [
        NodePool(name, cfg, network, ssh_key_ids, component_opts) for name, _ in cfg.pools.items()
    ]
    dns = DnsVm("dns", cfg, network, ssh_key_ids, component_opts)
    nodes = [n for p in pools for n in p.nodes]

    run_origins = [Origin(n.name, n.server.ipv4_address) for n in nodes if n.pool == "run"]
    run_origins += [
        Origin(r.name, str(r.public_ipv4)) for r in cfg.robot_servers if r.pool == "run"
    ]
    run_origins.sort(key=lambda o: o.name)
    lb = AppsLoadBalancer(
        "apps",
        cfg,
        run_origins,
        dns.public_ipv4,
        pulumi.ResourceOptions(providers=[cloudflare_provider]),
    )

    inventory = pulumi.Output.all(dns.public_ipv4, *[n.server.ipv4_address for n in nodes]).apply(
        lambda ips: inventory_document(cfg, nodes, list(ips[1:]), ips[0])
    )
    return {
        outputs.INVENTORY: inventory,
        outputs.K3S_API_ENDPOINT: k3s_api_endpoint(cfg),
        outputs.LB_ID: lb.lb.id,
        outputs.LB_POOL_ID: lb.pool.id,
        outputs.ZONE_ID: cfg.cloudflare.zone_id,
        outputs.LB_ORIGINS: pulumi.Output.all(*[o.address for o in run_origins]).apply(list),
        outputs.DNS_PUBLIC_IPV4: dns.public_ipv4,
    }
