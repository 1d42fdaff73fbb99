"""Node pools (`ctrl`, `ops`, `build`, `run`): servers, spread placement and the pool firewall."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

import pulumi
import pulumi_hcloud as hcloud

from stacks.common.inventory import PoolName
from stacks.infra.cloud_init import user_data
from stacks.infra.config import InfraConfig
from stacks.infra.firewall import declare_firewall
from stacks.infra.network import PrivateNetwork

# Hetzner caps a spread placement group at 10 servers, so a pool gets one group per 10 nodes
# (fixed by node index, so adding nodes never moves existing ones to another group).
SPREAD_GROUP_SIZE = 10


@dataclass(frozen=True)
class CloudNode:
    name: str
    pool: PoolName
    index: int
    private_ip: IPv4Address
    location: str
    server: hcloud.Server


def server_labels(env: str, pool: str) -> dict[str, str]:
    return {"env": env, "pool": pool, "managed-by": "pier"}


class NodePool(pulumi.ComponentResource):
    nodes: list[CloudNode]
    firewall: hcloud.Firewall
    placement_groups: list[hcloud.PlacementGroup]

    def __init__(
        self,
        name: PoolName,
        cfg: InfraConfig,
        network: PrivateNetwork,
        ssh_key_ids: list[pulumi.Output[str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("pier:infra:NodePool", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        pool = getattr(cfg.pools, name)
        labels = server_labels(cfg.env, name)
        self.firewall = declare_firewall(f"{name}-firewall", cfg, name, child)
        firewall_id = self.firewall.id.apply(int)
        groups = (pool.count + SPREAD_GROUP_SIZE - 1) // SPREAD_GROUP_SIZE
        self.placement_groups = [
            hcloud.PlacementGroup(
                f"{name}-spread-{g}",
                name=f"{cfg.env}-{name}-spread-{g}",
                type="spread",
                labels=labels,
                opts=child,
            )
            for g in range(1, groups + 1)
        ]
        group_ids = [pg.id.apply(int) for pg in self.placement_groups]
        # Servers join the network through the cloud subnet, which must exist first.
        server_opts = pulumi.ResourceOptions(parent=self, depends_on=[network.cloud_subnet])
        self.nodes = []
        for index, node_name in enumerate(pool.node_names(cfg.env, name), start=1):
            ip = pool.node_ip(index)
            location = pool.node_location(index)
            server = hcloud.Server(
                node_name,
                name=node_name,
                server_type=pool.server_type,
                image=pool.image,
                location=location,
                labels=labels,
                ssh_keys=ssh_key_ids,
                firewall_ids=[firewall_id],
                placement_group_id=group_ids[(index - 1) // SPREAD_GROUP_SIZE],
                public_nets=[hcloud.ServerPublicNetArgs(ipv4_enabled=True, ipv6_enabled=True)],
                networks=[hcloud.ServerNetworkArgs(network_id=network.network_id, ip=str(ip))],
                user_data=user_data(node_name, name, cfg.env),
                opts=server_opts,
            )
            self.nodes.append(CloudNode(node_name, name, index, ip, location, server))
        self.register_outputs({"servers": [n.name for n in self.nodes]})
