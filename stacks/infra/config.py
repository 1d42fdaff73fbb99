"""The infra stack's typed configuration, read once and validated before any resource exists.

The same model is filled from two sources: the Pulumi engine's config when the program runs
under `pulumi up`/`preview`, and the `Pulumi.<env>.yaml` file itself for the credential-free
`invoke plan`, the tests and the benchmark. Either way a bad value stops everything with one
sentence naming the key (`InfraConfigError`), before a single resource is registered.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network, ip_network
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML

from stacks.common.inventory import POOLS, PoolName, Taint

PROJECT = "pier-infra"
STACK_DIR = Path(__file__).resolve().parent

# Hetzner Cloud locations and the network zone each belongs to: a server can only join a
# subnet of its own zone, so a location outside the network's zone is refused up front.
LOCATION_ZONES: dict[str, str] = {
    "fsn1": "eu-central",
    "nbg1": "eu-central",
    "hel1": "eu-central",
    "ash": "us-east",
    "hil": "us-west",
    "sin": "ap-southeast",
}
# Hetzner allows at most 50 rules per firewall; going over fails half-way through `up`.
MAX_RULES_PER_FIREWALL = 50
# Ports that must never be reachable from the whole internet.
PROTECTED_PORTS = (22, 6443, 5000, 8081)
_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_TAINT = re.compile(
    r"^(?P<key>[A-Za-z0-9./_-]+)(=(?P<value>[A-Za-z0-9._-]*))?:"
    r"(?P<effect>NoSchedule|PreferNoSchedule|NoExecute)$"
)


class InfraConfigError(ValueError):
    """A config value is wrong; the message is one sentence that names the key."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _world(cidr: str) -> bool:
    return ip_network(cidr, strict=False).prefixlen == 0


class NetworkConfig(_Model):
    cidr: IPv4Network = IPv4Network("10.0.0.0/16")
    zone: str = "eu-central"
    cloud_subnet: IPv4Network = IPv4Network("10.0.0.0/17")
    vswitch_subnet: IPv4Network | None = None
    vswitch_id: int | None = Field(default=None, gt=0)
    vswitch_vlan: int | None = Field(default=None, ge=4000, le=4091)

    @field_validator("zone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        if zone not in set(LOCATION_ZONES.values()):
            raise ValueError(f"unknown network zone {zone!r}")
        return zone

    @model_validator(mode="after")
    def _subnets_fit(self) -> NetworkConfig:
        if not self.cloud_subnet.subnet_of(self.cidr):
            raise InfraConfigError(
                "cloud_subnet", f"{self.cloud_subnet} is not inside network cidr {self.cidr}"
            )
        if self.vswitch_subnet is not None:
            if not self.vswitch_subnet.subnet_of(self.cidr):
                raise InfraConfigError(
                    "vswitch_subnet", f"{self.vswitch_subnet} is not inside cidr {self.cidr}"
                )
            if self.vswitch_subnet.overlaps(self.cloud_subnet):
                raise InfraConfigError(
                    "vswitch_subnet",
                    f"{self.vswitch_subnet} overlaps cloud_subnet {self.cloud_subnet}",
                )
            if self.vswitch_id is None:
                raise InfraConfigError("vswitch_id", "is required when vswitch_subnet is set")
            # Hetzner couples vSwitches (Robot) to cloud networks in eu-central only.
            if self.zone != "eu-central":
                raise InfraConfigError(
                    "vswitch_subnet", f"needs network zone eu-central, not {self.zone}"
                )
        elif self.vswitch_id is not None:
            raise InfraConfigError("vswitch_subnet", "is required when vswitch_id is set")
        return self

    @property
    def gateway(self) -> IPv4Address:
        """Hetzner routes the network through its first address; no host may take it."""
        return self.cidr.network_address + 1

    @property
    def vswitch_gateway(self) -> IPv4Address | None:
        return None if self.vswitch_subnet is None else self.vswitch_subnet.network_address + 1


class PoolConfig(_Model):
    count: int = Field(ge=0, le=1000)
    names: list[str] | None = None
    server_type: str = Field(min_length=1)
    image: str = "debian-12"
    locations: list[str] = Field(min_length=1)
    ip_range: IPv4Network
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[str] = Field(default_factory=list)

    @field_validator("locations")
    @classmethod
    def _known_locations(cls, locations: list[str]) -> list[str]:
        for loc in locations:
            if loc not in LOCATION_ZONES:
                raise ValueError(
                    f"unknown location {loc!r} (known: {', '.join(sorted(LOCATION_ZONES))})"
                )
        return locations

    @field_validator("taints")
    @classmethod
    def _taint_syntax(cls, taints: list[str]) -> list[str]:
        for taint in taints:
            if not _TAINT.match(taint):
                raise ValueError(f"taint {taint!r} is not `key=value:Effect`")
        return taints

    @model_validator(mode="after")
    def _names_match_count(self) -> PoolConfig:
        if self.names is not None and len(self.names) != self.count:
            raise InfraConfigError(
                "names", f"has {len(self.names)} entries but count is {self.count}"
            )
        # The network address and broadcast are not assignable.
        capacity = self.ip_range.num_addresses - 2
        if self.count > capacity:
            raise InfraConfigError(
                "count", f"{self.count} nodes do not fit ip_range {self.ip_range} ({capacity})"
            )
        return self

    def node_names(self, env: str, pool: str) -> list[str]:
        return (
            list(self.names)
            if self.names
            else [f"{env}-{pool}-{i}" for i in range(1, self.count + 1)]
        )

    def node_ip(self, index: int) -> IPv4Address:
        """Private IP of the node with 1-based `index`: fixed by position, never reshuffled."""
        return self.ip_range.network_address + index

    def node_location(self, index: int) -> str:
        return self.locations[(index - 1) % len(self.locations)]

    def parsed_taints(self) -> tuple[Taint, ...]:
        out: list[Taint] = []
        for taint in self.taints:
            m = _TAINT.match(taint)
            assert m is not None  # checked by _taint_syntax
            out.append(Taint(key=m["key"], value=m["value"] or "", effect=m["effect"]))  # type: ignore[arg-type]
        return tuple(out)


class PoolsConfig(_Model):
    ctrl: PoolConfig
    ops: PoolConfig
    build: PoolConfig
    run: PoolConfig

    def items(self) -> list[tuple[PoolName, PoolConfig]]:
        return [(name, getattr(self, name)) for name in POOLS]


class RobotServer(_Model):
    name: str
    pool: PoolName
    public_ipv4: IPv4Address
    private_ip: IPv4Address
    location: str = Field(min_length=1)


class DnsVmConfig(_Model):
    server_type: str = "cx22"
    image: str = "debian-12"
    location: str = "fsn1"
    private_ip: IPv4Address = IPv4Address("10.0.0.53")

    @field_validator("location")
    @classmethod
    def _known_location(cls, loc: str) -> str:
        if loc not in LOCATION_ZONES:
            raise ValueError(
                f"unknown location {loc!r} (known: {', '.join(sorted(LOCATION_ZONES))})"
            )
        return loc


class FirewallRule(_Model):
    protocol: Literal["tcp", "udp", "icmp"]
    port: str | None = None
    sources: list[str] = Field(min_length=1)
    description: str = ""

    @field_validator("sources")
    @classmethod
    def _cidrs(cls, sources: list[str]) -> list[str]:
        for src in sources:
            try:
                ip_network(src, strict=False)
            except ValueError as exc:
                raise ValueError(f"source {src!r} is not a CIDR") from exc
        return sources

    def ports(self) -> range:
        if self.port is None:
            return range(0)
        low, _, high = self.port.partition("-")
        return range(int(low), int(high or low) + 1)

    @model_validator(mode="after")
    def _protected_ports_stay_private(self) -> FirewallRule:
        if self.protocol == "icmp":
            if self.port is not None:
                raise InfraConfigError("port", "icmp rules take no port")
        elif self.port is None:
            raise InfraConfigError("port", f"{self.protocol} rules need a port or `low-high` range")
        elif not re.fullmatch(r"\d{1,5}(-\d{1,5})?", self.port) or not (
            1 <= self.ports().start < self.ports().stop <= 65536
        ):
            raise InfraConfigError("port", f"{self.port!r} is not a port or `low-high` range")
        if any(_world(s) for s in self.sources):
            opened = [p for p in PROTECTED_PORTS if p in self.ports()]
            if opened:
                raise InfraConfigError(
                    "sources", f"opens protected port {opened[0]} to the whole internet"
                )
        return self


class FirewallConfig(_Model):
    admin_cidrs: list[str] = Field(min_length=1)
    extra_rules: dict[Literal["ctrl", "ops", "build", "run", "dns"], list[FirewallRule]] = Field(
        default_factory=dict
    )

    @field_validator("admin_cidrs")
    @classmethod
    def _admin_not_world(cls, cidrs: list[str]) -> list[str]:
        for cidr in cidrs:
            try:
                net = ip_network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not a valid CIDR") from exc
            if net.prefixlen == 0:
                raise ValueError(f"{cidr} would open SSH and the k3s API to the whole internet")
        return cidrs


class CloudflareConfig(_Model):
    account_id: str = Field(min_length=1)
    zone_id: str = Field(min_length=1)
    # Cloudflare's published origin ranges (https://www.cloudflare.com/ips/): only they may
    # reach 80/443 on run nodes, so traffic cannot bypass the load balancer.
    ip_ranges: list[str] = Field(min_length=1)
    apps_hostname: str | None = None
    monitor_path: str = "/healthz"
    monitor_port: int = Field(default=80, ge=1, le=65535)

    @field_validator("ip_ranges")
    @classmethod
    def _ranges(cls, ranges: list[str]) -> list[str]:
        for cidr in ranges:
            try:
                net = ip_network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not a valid CIDR") from exc
            if net.prefixlen < 8:
                raise ValueError(f"{cidr} is not a Cloudflare range (too wide)")
        return ranges


class K3sConfig(_Model):
    embedded_etcd: bool = True


class VaultConfig(_Model):
    mount: str = "secret"
    path: str = Field(min_length=1)


class InfraConfig(_Model):
    env: str = Field(pattern=r"^[a-z][a-z0-9-]{0,20}$")
    domain: str = Field(pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,}$")
    ssh_keys: dict[str, str] = Field(min_length=1)
    network: NetworkConfig = NetworkConfig()
    k3s: K3sConfig = K3sConfig()
    pools: PoolsConfig
    robot_servers: list[RobotServer] = Field(default_factory=list)
    dns_vm: DnsVmConfig = DnsVmConfig()
    firewall: FirewallConfig
    cloudflare: CloudflareConfig
    vault: VaultConfig | None = None

    @field_validator("ssh_keys")
    @classmethod
    def _public_keys(cls, keys: dict[str, str]) -> dict[str, str]:
        for name, key in keys.items():
            if not re.match(r"^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/=]+", key):
                raise ValueError(f"{name!r} is not an OpenSSH public key")
        return keys

    @property
    def apps_hostname(self) -> str:
        return self.cloudflare.apps_hostname or f"*.apps.{self.domain}"

    @property
    def dns_vm_name(self) -> str:
        return f"{self.env}-dns"

    @model_validator(mode="after")
    def _cross_checks(self) -> InfraConfig:
        self._check_pools()
        self._check_robots()
        self._check_dns_vm()
        self._check_names()
        self._check_firewall_limits()
        return self

    def _check_pools(self) -> None:
        net = self.network
        ranges: list[tuple[str, IPv4Network]] = []
        for pool, cfg in self.pools.items():
            key = f"pools.{pool}"
            if not cfg.ip_range.subnet_of(net.cloud_subnet):
                raise InfraConfigError(
                    f"{key}.ip_range", f"{cfg.ip_range} is outside cloud_subnet {net.cloud_subnet}"
                )
            if net.gateway in cfg.ip_range:
                raise InfraConfigError(
                    f"{key}.ip_range", f"{cfg.ip_range} contains the network gateway {net.gateway}"
                )
            for other, other_range in ranges:
                if cfg.ip_range.overlaps(other_range):
                    raise InfraConfigError(
                        f"{key}.ip_range", f"{cfg.ip_range} overlaps pools.{other}.ip_range"
                    )
            ranges.append((pool, cfg.ip_range))
            for loc in cfg.locations:
                if LOCATION_ZONES[loc] != net.zone:
                    raise InfraConfigError(
                        f"{key}.locations",
                        f"{loc} is in {LOCATION_ZONES[loc]}, not the network zone {net.zone}",
                    )
        ctrl = self.pools.ctrl.count
        if ctrl < 1:
            raise InfraConfigError("pools.ctrl.count", "must be at least 1")
        # Robot servers in ctrl are etcd members too, so they count towards quorum.
        robot_ctrl = sum(1 for r in self.robot_servers if r.pool == "ctrl")
        if self.k3s.embedded_etcd and (ctrl + robot_ctrl) % 2 == 0:
            with_robots = f" (+ {robot_ctrl} Robot ctrl servers)" if robot_ctrl else ""
            raise InfraConfigError(
                "pools.ctrl.count",
                f"{ctrl}{with_robots} is even; embedded etcd needs an odd count for quorum",
            )
        for pool in ("build", "run"):
            robots = [r for r in self.robot_servers if r.pool == pool]
            if getattr(self.pools, pool).count == 0 and not robots:
                raise InfraConfigError(
                    f"pools.{pool}.count",
                    "must be at least 1 (or list a Robot server in it): "
                    + ("the registry runs there" if pool == "build" else "the LB needs origins"),
                )

    def _check_robots(self) -> None:
        net = self.network
        for i, robot in enumerate(self.robot_servers):
            key = f"robot_servers[{i}]"
            if net.vswitch_subnet is None:
                raise InfraConfigError(
                    key, f"{robot.name} needs network.vswitch_subnet and network.vswitch_id"
                )
            if robot.private_ip not in net.vswitch_subnet or robot.private_ip in (
                net.vswitch_subnet.network_address,
                net.vswitch_gateway,
                net.vswitch_subnet.broadcast_address,
            ):
                raise InfraConfigError(
                    f"{key}.private_ip",
                    f"{robot.private_ip} is not a usable host of vswitch_subnet"
                    f" {net.vswitch_subnet}",
                )
            # Documentation ranges are accepted so examples stay obviously fake.
            documentation = any(
                robot.public_ipv4 in IPv4Network(n)
                for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
            )
            if not robot.public_ipv4.is_global and not documentation:
                raise InfraConfigError(
                    f"{key}.public_ipv4", f"{robot.public_ipv4} is not a public address"
                )

    def _check_dns_vm(self) -> None:
        ip = self.dns_vm.private_ip
        net = self.network
        if ip not in net.cloud_subnet or ip == net.gateway:
            raise InfraConfigError(
                "dns_vm.private_ip", f"{ip} is not a usable host of cloud_subnet {net.cloud_subnet}"
            )
        for pool, cfg in self.pools.items():
            if ip in cfg.ip_range:
                raise InfraConfigError(
                    "dns_vm.private_ip", f"{ip} lies in pools.{pool}.ip_range {cfg.ip_range}"
                )
        if LOCATION_ZONES[self.dns_vm.location] != net.zone:
            raise InfraConfigError(
                "dns_vm.location", f"{self.dns_vm.location} is not in network zone {net.zone}"
            )

    def _check_names(self) -> None:
        seen: dict[str, str] = {self.dns_vm_name: "dns_vm"}
        named: list[tuple[str, str]] = []
        for pool, cfg in self.pools.items():
            named += [(f"pools.{pool}.names", n) for n in cfg.node_names(self.env, pool)]
        named += [(f"robot_servers[{i}].name", r.name) for i, r in enumerate(self.robot_servers)]
        for key, name in named:
            if not _NODE_NAME.match(name):
                raise InfraConfigError(key, f"{name!r} is not a valid hostname (a-z, 0-9, -)")
            if name in seen:
                raise InfraConfigError(key, f"duplicate node name {name!r} (also in {seen[name]})")
            seen[name] = key
        ips: dict[IPv4Address, str] = {}
        for i, robot in enumerate(self.robot_servers):
            if robot.private_ip in ips:
                raise InfraConfigError(
                    f"robot_servers[{i}].private_ip",
                    f"{robot.private_ip} is already used by {ips[robot.private_ip]}",
                )
            ips[robot.private_ip] = robot.name

    def _check_firewall_limits(self) -> None:
        # Imported here: firewall.py builds its rules from this (already validated) model.
        from stacks.infra.firewall import FIREWALL_GROUPS, rules_for

        for group in FIREWALL_GROUPS:
            rules = rules_for(self, group)
            if len(rules) > MAX_RULES_PER_FIREWALL:
                raise InfraConfigError(
                    f"firewall.extra_rules.{group}",
                    f"the {group} firewall would have {len(rules)} rules, over Hetzner's limit"
                    f" of {MAX_RULES_PER_FIREWALL}",
                )


def _error_sentence(exc: ValidationError) -> str:
    """One sentence for the first problem pydantic found, naming the key."""
    err = exc.errors(include_url=False)[0]
    loc = [str(p) if isinstance(p, str) else f"[{p}]" for p in err["loc"]]
    key = ".".join(loc).replace(".[", "[")
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, InfraConfigError):
        key = f"{key}.{cause.key}" if key else cause.key
        problem = cause.problem
    elif err["type"] == "missing":
        problem = "is required but missing"
    elif err["type"] == "extra_forbidden":
        problem = "is not a known setting (check the spelling)"
    else:
        problem = str(cause) if cause is not None else err["msg"]
        if isinstance(err.get("input"), str | int | float) and err["type"] != "value_error":
            problem = f"{problem} (got {err['input']!r})"
    return f"{key}: {problem}" if key else problem


def validate(data: Mapping[str, Any], *, source: str = "infra config") -> InfraConfig:
    """Validate raw config (keys without the `pier-infra:` prefix) into an `InfraConfig`."""
    try:
        return InfraConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise InfraConfigError(source, _error_sentence(exc)) from None


def strip_namespace(config: Mapping[str, Any]) -> dict[str, Any]:
    """Keep this project's keys (`pier-infra:x` -> `x`); provider keys are not ours to check."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        ns, _, name = str(key).partition(":")
        if ns == PROJECT:
            if isinstance(value, Mapping) and set(value) == {"secure"}:
                # Encrypted values need the Pulumi CLI; the token loader reads them there.
                continue
            out[name] = value
    return out


def stack_file(env: str) -> Path:
    return STACK_DIR / f"Pulumi.{env}.yaml"


def read_file(path: Path) -> dict[str, Any]:
    """The raw (namespace-stripped) config of a `Pulumi.<env>.yaml` file."""
    if not path.is_file():
        raise InfraConfigError(str(path), "no such stack config file")
    doc = YAML(typ="safe").load(path.read_text()) or {}
    if not isinstance(doc, dict) or not isinstance(doc.get("config", {}), dict):
        raise InfraConfigError(str(path), "expected a mapping with a `config:` mapping")
    return strip_namespace(doc.get("config") or {})


def load_file(path: Path) -> InfraConfig:
    """Read and validate a stack config file (what `invoke plan` and the tests use)."""
    return validate(read_file(path), source=path.name)


def resolve_env(env_or_path: str) -> Path:
    """`staging`/`prod` name this project's stack files; anything else is a path."""
    if re.fullmatch(r"[a-z][a-z0-9-]*", env_or_path) and stack_file(env_or_path).is_file():
        return stack_file(env_or_path)
    return Path(env_or_path)


# Keys read from the Pulumi engine's config (one per top-level field of InfraConfig).
CONFIG_KEYS = tuple(InfraConfig.model_fields)


def from_pulumi(stack: str) -> InfraConfig:
    """Read this project's keys from the running Pulumi engine and validate them."""
    # Imported here so validating a file (plan, tests, add-run-node) does not load the SDK.
    import pulumi

    conf = pulumi.Config()
    raw: dict[str, Any] = {}
    for key in CONFIG_KEYS:
        value = conf.get(key)
        if value is None:
            continue
        # Structured values arrive JSON-encoded; plain strings do not.
        try:
            raw[key] = json.loads(value)
        except json.JSONDecodeError:
            raw[key] = value
    cfg = validate(raw, source=f"Pulumi.{stack}.yaml")
    if cfg.env != stack:
        raise InfraConfigError(
            f"Pulumi.{stack}.yaml", f"env: {cfg.env!r} does not match the stack name {stack!r}"
        )
    return cfg
