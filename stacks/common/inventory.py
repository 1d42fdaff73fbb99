"""The inventory document: the contract between the infra stack and Ansible.

The infra stack exports exactly one such document (under `outputs.INVENTORY`); Ansible's
inventory, `invoke add-run-node` and the tests read it back through `InventoryDocument`.
Changes here must stay backward compatible within one `version`.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Network
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PoolName = Literal["ctrl", "ops", "build", "run"]
# The PowerDNS VM is not a cluster node; it is listed with this pseudo-pool.
DNS_POOL: Literal["dns"] = "dns"
HostPool = Literal["ctrl", "ops", "build", "run", "dns"]
POOLS: tuple[PoolName, ...] = ("ctrl", "ops", "build", "run")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Taint(_Frozen):
    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]

    def as_k3s_arg(self) -> str:
        """The `key=value:Effect` form k3s' `node-taint` takes."""
        return (
            f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"
        )


class Host(_Frozen):
    name: str
    pool: HostPool
    kind: Literal["cloud", "robot"]
    public_ipv4: IPv4Address | None
    private_ip: IPv4Address
    location: str
    labels: dict[str, str] = Field(default_factory=dict)
    taints: tuple[Taint, ...] = ()


class Network(_Frozen):
    cidr: IPv4Network
    cloud_subnet: IPv4Network
    vswitch_subnet: IPv4Network | None = None
    vswitch_id: int | None = None
    # The 802.1Q VLAN id Robot servers tag vSwitch traffic with (Hetzner: 4000-4091).
    vswitch_vlan: int | None = None
    # First usable address of the vSwitch subnet: Hetzner's gateway to the cloud network.
    vswitch_gateway: IPv4Address | None = None


class InventoryDocument(_Frozen):
    version: Literal[1] = 1
    env: str
    domain: str
    network: Network
    k3s_api_endpoint: str
    # host:port of the internal registry on the build pool, reachable on the private network.
    registry: str
    hosts: tuple[Host, ...]
    # Networks operators come from: the host firewall opens admin ports (the k3s API) to them,
    # matching the Hetzner firewall in front.
    admin_cidrs: tuple[IPv4Network | IPv6Network, ...] = ()

    def pool(self, pool: HostPool) -> list[Host]:
        return [h for h in self.hosts if h.pool == pool]
