"""Firewall rules as computed from config, and the Hetzner rules-per-firewall limit."""

from __future__ import annotations

from typing import Any

import pytest

from stacks.infra import config
from stacks.infra.config import MAX_RULES_PER_FIREWALL, InfraConfigError
from stacks.infra.firewall import rules_for
from tests.stacks.infra.conftest import minimal_raw


def _ports(cfg: config.InfraConfig, group: Any) -> dict[tuple[str, str | None], list[str]]:
    return {(r["protocol"], r["port"]): r["source_ips"] for r in rules_for(cfg, group)}


def test_minimal_rules_per_group() -> None:
    cfg = config.validate(minimal_raw())
    admin = ["203.0.113.0/28"]
    assert _ports(cfg, "ctrl")[("tcp", "6443")] == ["10.0.0.0/16", *admin]
    assert ("tcp", "6443") not in _ports(cfg, "run")
    assert _ports(cfg, "run")[("tcp", "443")] == list(cfg.cloudflare.ip_ranges)
    assert _ports(cfg, "build")[("tcp", "5000")] == ["10.0.0.0/16"]
    assert _ports(cfg, "dns")[("udp", "53")] == ["0.0.0.0/0", "::/0"]
    assert _ports(cfg, "dns")[("tcp", "8081")] == ["10.0.0.0/16"]
    for group in ("ctrl", "ops", "build", "run", "dns"):
        assert _ports(cfg, group)[("tcp", "22")] == admin
    # Without Robot servers there is nothing to allow kubelet traffic from.
    assert ("tcp", "10250") not in _ports(cfg, "run")


def test_robot_servers_become_sources() -> None:
    raw = minimal_raw()
    raw["network"] = {"vswitch_subnet": "10.0.128.0/24", "vswitch_id": 9}
    raw["robot_servers"] = [
        {
            "name": "r1",
            "pool": "run",
            "public_ipv4": "198.51.100.9",
            "private_ip": "10.0.128.9",
            "location": "FSN1-DC14",
        }
    ]
    cfg = config.validate(raw)
    assert "198.51.100.9/32" not in _ports(cfg, "ctrl")[("tcp", "6443")]  # vSwitch: private
    assert _ports(cfg, "ops")[("tcp", "10250")] == ["198.51.100.9/32"]


def test_extra_rules_are_appended_to_their_group_only() -> None:
    raw = minimal_raw()
    raw["firewall"]["extra_rules"] = {
        "ops": [{"protocol": "tcp", "port": "9100", "sources": ["10.0.0.0/8"], "description": "x"}]
    }
    cfg = config.validate(raw)
    assert _ports(cfg, "ops")[("tcp", "9100")] == ["10.0.0.0/8"]
    assert ("tcp", "9100") not in _ports(cfg, "run")


def test_rule_limit_is_refused_before_anything_is_declared() -> None:
    raw = minimal_raw()
    base = len(rules_for(config.validate(raw), "run"))
    rule = {"protocol": "udp", "port": "7000", "sources": ["10.0.0.0/8"]}
    raw["firewall"]["extra_rules"] = {"run": [rule] * (MAX_RULES_PER_FIREWALL - base)}
    assert len(rules_for(config.validate(raw), "run")) == MAX_RULES_PER_FIREWALL
    raw["firewall"]["extra_rules"]["run"].append(rule)
    with pytest.raises(
        InfraConfigError, match=r"firewall.extra_rules.run: .* over Hetzner's limit"
    ):
        config.validate(raw)


@pytest.mark.parametrize("port", ["22", "5000-5001", "8000-9000", "6443"])
def test_protected_ports_cannot_be_opened_to_the_world(port: str) -> None:
    raw = minimal_raw()
    raw["firewall"]["extra_rules"] = {
        "dns": [{"protocol": "tcp", "port": port, "sources": ["0.0.0.0/0"]}]
    }
    with pytest.raises(InfraConfigError, match="opens protected port"):
        config.validate(raw)


def test_world_is_fine_for_unprotected_ports() -> None:
    raw = minimal_raw()
    raw["firewall"]["extra_rules"] = {
        "run": [{"protocol": "udp", "port": "51820", "sources": ["0.0.0.0/0"]}]
    }
    assert _ports(config.validate(raw), "run")[("udp", "51820")] == ["0.0.0.0/0"]
