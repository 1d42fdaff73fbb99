"""The standalone PowerDNS VM: authoritative for the platform's zones, not a cluster node."""

from __future__ import annotations

import pulumi
import pulumi_hcloud as hcloud

from stacks.infra.cloud_init import user_data
from stacks.infra.config import InfraConfig
from stacks.infra.firewall import declare_firewall
from stacks.infra.network import PrivateNetwork
from stacks.infra.pools import server_labels


class DnsVm(pulumi.ComponentResource):
    server: hcloud.Server
    firewall: hcloud.Firewall
    public_ipv4: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        cfg: InfraConfig,
        network: PrivateNetwork,
        ssh_key_ids: list[pulumi.Output[str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("pier:infra:DnsVm", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        vm = cfg.dns_vm
        labels = server_labels(cfg.env, "dns")
        self.firewall = declare_firewall(f"{name}-firewall", cfg, "dns", child)
        placement = hcloud.PlacementGroup(
            f"{name}-spread", name=f"{cfg.env}-dns-spread", type="spread", labels=labels, opts=child
        )
        self.server = hcloud.Server(
            cfg.dns_vm_name,
            name=cfg.dns_vm_name,
            server_type=vm.server_type,
            image=vm.image,
            location=vm.location,
            labels=labels,
            ssh_keys=ssh_key_ids,
            firewall_ids=[self.firewall.id.apply(int)],
            placement_group_id=placement.id.apply(int),
            public_nets=[hcloud.ServerPublicNetArgs(ipv4_enabled=True, ipv6_enabled=True)],
            networks=[
                hcloud.ServerNetworkArgs(network_id=network.network_id, ip=str(vm.private_ip))
            ],
            user_data=user_data(cfg.dns_vm_name, "dns", cfg.env),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[network.cloud_subnet]),
        )
        self.public_ipv4 = self.server.ipv4_address
        self.register_outputs({"public_ipv4": self.public_ipv4})
