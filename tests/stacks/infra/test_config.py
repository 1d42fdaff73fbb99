"""Config validation: every kind of bad value stops with one sentence naming the key, and the
program registers no resource at all."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from stacks.infra import config
from stacks.infra.config import InfraConfigError
from stacks.infra.dryrun import InfraMocks, RecordingMonitor, dry_run
from tests.stacks.infra.conftest import minimal_raw

Mutator = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutator:
    def mutate(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node, dict) else node[int(part)]
        node[last] = value

    return mutate


def _delete(key: str) -> Mutator:
    return lambda raw: raw.pop(key) and None


def _robot(**overrides: Any) -> Mutator:
    def mutate(raw: dict[str, Any]) -> None:
        raw["network"] = {"vswitch_subnet": "10.0.128.0/24", "vswitch_id": 7}
        robot = {
            "name": "mini-run-r1",
            "pool": "run",
            "public_ipv4": "198.51.100.7",
            "private_ip": "10.0.128.7",
            "location": "FSN1-DC14",
        }
        raw["robot_servers"] = [{**robot, **overrides}]

    return mutate


def _no_vswitch_robot(raw: dict[str, Any]) -> None:
    _robot()(raw)
    del raw["network"]


def _many_extra_rules(raw: dict[str, Any]) -> None:
    rule = {"protocol": "tcp", "port": "9000", "sources": ["10.0.0.0/8"]}
    raw["firewall"]["extra_rules"] = {"ops": [rule] * 49}


# (id, mutation, key the message must name)
INVALID: list[tuple[str, Mutator, str]] = [
    ("bad-cidr", _set("network.cidr", "10.0.0.0/33"), "network.cidr"),
    ("subnet-outside-network", _set("network.cloud_subnet", "10.1.0.0/17"), "network.cloud_subnet"),
    (
        "overlapping-vswitch-subnet",
        _set("network", {"vswitch_subnet": "10.0.64.0/24", "vswitch_id": 3}),
        "network.vswitch_subnet",
    ),
    (
        "overlapping-pool-ranges",
        _set("pools.ops.ip_range", "10.0.1.128/25"),
        "pools.ops.ip_range",
    ),
    (
        "pool-range-outside-subnet",
        _set("pools.run.ip_range", "10.0.200.0/24"),
        "pools.run.ip_range",
    ),
    ("negative-count", _set("pools.run.count", -1), "pools.run.count"),
    ("count-not-a-number", _set("pools.run.count", "many"), "pools.run.count"),
    ("count-beyond-range", _set("pools.ctrl.count", 255), "pools.ctrl.count"),
    ("even-ctrl-embedded-etcd", _set("pools.ctrl.count", 2), "pools.ctrl.count"),
    ("no-ctrl", _set("pools.ctrl.count", 0), "pools.ctrl.count"),
    ("robot-ctrl-makes-even", _robot(name="mini-ctrl-r1", pool="ctrl"), "pools.ctrl.count"),
    ("no-run-node", _set("pools.run.count", 0), "pools.run.count"),
    ("names-count-mismatch", _set("pools.run.names", ["a", "b"]), "pools.run.names"),
    ("duplicate-names", _set("pools.build.names", ["mini-run-1"]), "pools.run.names"),
    ("invalid-hostname", _set("pools.run.names", ["Run_1"]), "pools.run.names"),
    ("unknown-pool", _set("pools.gpu", {"count": 1}), "pools.gpu"),
    ("robot-without-vswitch", _no_vswitch_robot, "robot_servers[0]"),
    (
        "robot-ip-outside-vswitch",
        _robot(private_ip="10.0.1.9"),
        "robot_servers[0].private_ip",
    ),
    ("robot-unknown-pool", _robot(pool="gpu"), "robot_servers[0].pool"),
    ("robot-private-public-ip", _robot(public_ipv4="10.9.9.9"), "robot_servers[0].public_ipv4"),
    ("missing-domain", _delete("domain"), "domain"),
    ("bad-domain", _set("domain", "not a domain"), "domain"),
    ("unknown-location", _set("pools.run.locations", ["mars1"]), "pools.run.locations"),
    ("location-other-zone", _set("pools.run.locations", ["ash"]), "pools.run.locations"),
    ("dns-ip-in-pool-range", _set("dns_vm.private_ip", "10.0.1.5"), "dns_vm.private_ip"),
    ("dns-ip-gateway", _set("dns_vm.private_ip", "10.0.0.1"), "dns_vm.private_ip"),
    ("admin-cidr-world", _set("firewall.admin_cidrs", ["0.0.0.0/0"]), "firewall.admin_cidrs"),
    (
        "extra-rule-opens-ssh",
        _set(
            "firewall.extra_rules",
            {"run": [{"protocol": "tcp", "port": "20-30", "sources": ["::/0"]}]},
        ),
        "firewall.extra_rules.run[0].sources",
    ),
    ("firewall-over-limit", _many_extra_rules, "firewall.extra_rules.ops"),
    (
        "tcp-rule-without-port",
        _set("firewall.extra_rules", {"ops": [{"protocol": "tcp", "sources": ["10.0.0.0/8"]}]}),
        "firewall.extra_rules.ops[0].port",
    ),
    (
        "port-out-of-range",
        _set(
            "firewall.extra_rules",
            {"ops": [{"protocol": "udp", "port": "9-70000", "sources": ["10.0.0.0/8"]}]},
        ),
        "firewall.extra_rules.ops[0].port",
    ),
    ("bad-taint", _set("pools.run.taints", ["dedicated"]), "pools.run.taints"),
    (
        "vswitch-outside-eu-central",
        _set("network", {"zone": "us-east", "vswitch_subnet": "10.0.128.0/24", "vswitch_id": 3}),
        "network.vswitch_subnet",
    ),
    ("vlan-out-of-range", _set("network", {"vswitch_vlan": 12}), "network.vswitch_vlan"),
    ("bad-ssh-key", _set("ssh_keys", {"ops": "not-a-key"}), "ssh_keys"),
    ("cloudflare-range-world", _set("cloudflare.ip_ranges", ["0.0.0.0/0"]), "cloudflare.ip_ranges"),
    ("typo-key", _set("firewal", {}), "firewal"),
]


@pytest.mark.parametrize(("mutate", "key"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_config_stops_with_one_sentence_and_no_resource(mutate: Mutator, key: str) -> None:
    raw = minimal_raw()
    mutate(raw)
    monitor = RecordingMonitor(InfraMocks())
    with pytest.raises(InfraConfigError) as caught:
        dry_run(raw, monitor=monitor)
    message = str(caught.value)
    assert f" {key}:" in f" {message.split(': ', 1)[1]}", message
    assert "\n" not in message, message
    assert monitor.registered == [], f"{message} but {len(monitor.registered)} resources exist"


def test_there_are_at_least_twelve_kinds_of_invalid_config() -> None:
    assert len({key for _, _, key in INVALID}) >= 12


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_example_stack_files_are_valid(env: str) -> None:
    cfg = config.load_file(config.stack_file(env))
    assert cfg.env == env
    assert cfg.pools.ctrl.count % 2 == 1
    assert any(r.pool == "run" for r in cfg.robot_servers)


def test_node_names_and_ips_are_deterministic_by_index() -> None:
    raw = minimal_raw()
    raw["pools"]["run"]["count"] = 3
    pool = config.validate(raw).pools.run
    assert pool.node_names("mini", "run") == ["mini-run-1", "mini-run-2", "mini-run-3"]
    assert [pool.node_ip(i) for i in (1, 2, 3)] == [
        IPv4Address("10.0.16.1"),
        IPv4Address("10.0.16.2"),
        IPv4Address("10.0.16.3"),
    ]
    raw["pools"]["run"]["count"] = 4
    raw["pools"]["run"]["names"] = ["mini-run-1", "mini-run-2", "mini-run-3", "edge-7"]
    grown = config.validate(raw).pools.run
    assert grown.node_names("mini", "run")[3] == "edge-7"
    assert grown.node_ip(4) == IPv4Address("10.0.16.4")


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InfraConfigError, match="no such stack config file"):
        config.load_file(tmp_path / "Pulumi.nope.yaml")
    bad = tmp_path / "Pulumi.x.yaml"
    bad.write_text("config:\n  pier-infra:env: x\n")
    with pytest.raises(InfraConfigError, match=r"^Pulumi.x.yaml: domain: is required"):
        config.load_file(bad)


def test_secure_values_and_other_namespaces_are_skipped() -> None:
    raw = config.strip_namespace(
        {
            "pier-infra:env": "a",
            "pier-infra:hcloud_token": {"secure": "v1:abc"},
            "hcloud:endpoint": "x",
        }
    )
    assert raw == {"env": "a"}


def test_resolve_env_accepts_names_and_paths(tmp_path: Path) -> None:
    assert config.resolve_env("prod") == config.stack_file("prod")
    assert config.resolve_env(str(tmp_path / "c.yaml")) == tmp_path / "c.yaml"
