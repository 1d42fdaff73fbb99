"""The private network: a Hetzner network with a cloud subnet and optionally a vSwitch subnet."""

from __future__ import annotations

import pulumi
import pulumi_hcloud as hcloud

from stacks.infra.config import InfraConfig


class PrivateNetwork(pulumi.ComponentResource):
    network: hcloud.Network
    cloud_subnet: hcloud.NetworkSubnet
    vswitch_subnet: hcloud.NetworkSubnet | None
    network_id: pulumi.Output[int]

    def __init__(
        self, name: str, cfg: InfraConfig, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("pier:infra:PrivateNetwork", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        net = cfg.network
        self.network = hcloud.Network(
            f"{name}-net",
            name=f"{cfg.env}-pier",
            ip_range=str(net.cidr),
            # Robot servers behind the vSwitch must reach every cloud subnet.
            expose_routes_to_vswitch=net.vswitch_subnet is not None,
            labels={"env": cfg.env, "managed-by": "pier"},
            opts=child,
        )
        self.network_id = self.network.id.apply(int)
        self.cloud_subnet = hcloud.NetworkSubnet(
            f"{name}-cloud",
            network_id=self.network_id,
            type="cloud",
            network_zone=net.zone,
            ip_range=str(net.cloud_subnet),
            opts=child,
        )
        self.vswitch_subnet = None
        if net.vswitch_subnet is not None:
            self.vswitch_subnet = hcloud.NetworkSubnet(
                f"{name}-vswitch",
                network_id=self.network_id,
                type="vswitch",
                network_zone=net.zone,
                ip_range=str(net.vswitch_subnet),
                vswitch_id=net.vswitch_id,
                opts=child,
            )
        self.register_outputs({"network_id": self.network_id})
