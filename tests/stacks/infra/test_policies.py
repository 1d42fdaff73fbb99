"""Policies over the whole resource graph of staging, prod and a minimal environment.

Each assertion names the URN of the offending resource."""

from __future__ import annotations

import json
from collections.abc import Callable
from ipaddress import IPv4Address, ip_network
from typing import Any

from stacks.common.inventory import InventoryDocument
from stacks.infra import config, outputs
from stacks.infra.dryrun import SERVER, DryRun, dry_run
from stacks.infra.pools import SPREAD_GROUP_SIZE
from stacks.infra.tokens import CLOUDFLARE_KEY, HCLOUD_KEY, _secret_pair

FIREWALL = "hcloud:index/firewall:Firewall"
PLACEMENT = "hcloud:index/placementGroup:PlacementGroup"
LB_POOL = "cloudflare:index/loadBalancerPool:LoadBalancerPool"
LB = "cloudflare:index/loadBalancer:LoadBalancer"
RECORD = "cloudflare:index/dnsRecord:DnsRecord"
SUBNET = "hcloud:index/networkSubnet:NetworkSubnet"
NETWORK = "hcloud:index/network:Network"
PROTECTED = (22, 6443, 5000, 8081)


def _cfg(run: DryRun) -> config.InfraConfig:
    inv = InventoryDocument.model_validate(run.exports[outputs.INVENTORY])
    from tests.stacks.infra.conftest import raw_for

    env = "minimal" if inv.env == "mini" else inv.env
    return config.validate(raw_for(env))


def _ports(rule: dict[str, Any]) -> range:
    port = rule.get("port")
    if not port:
        return range(0, 65536) if rule["protocol"] in ("tcp", "udp") else range(0)
    low, _, high = str(port).partition("-")
    return range(int(low), int(high or low) + 1)


def test_every_server_is_labelled_placed_and_on_the_network_in_its_pool_range(run: DryRun) -> None:
    cfg = _cfg(run)
    servers = run.of_type(SERVER)
    assert len(servers) == sum(p.count for _, p in cfg.pools.items()) + 1
    for s in servers:
        labels = s.inputs.get("labels", {})
        assert labels.get("env") == cfg.env and labels.get("pool"), f"{s.urn}: labels {labels}"
        assert s.inputs.get("placementGroupId"), f"{s.urn}: no placement group"
        assert s.inputs.get("firewallIds"), f"{s.urn}: no firewall"
        assert s.inputs.get("sshKeys"), f"{s.urn}: no SSH key"
        assert s.inputs.get("userData", "").startswith("#cloud-config"), f"{s.urn}: no cloud-init"
        nets = s.inputs.get("networks", [])
        assert len(nets) == 1 and nets[0].get("networkId"), f"{s.urn}: not on the network"
        ip = IPv4Address(nets[0]["ip"])
        pool = labels["pool"]
        if pool == "dns":
            assert ip in cfg.network.cloud_subnet, f"{s.urn}: {ip} outside the cloud subnet"
            assert all(ip not in p.ip_range for _, p in cfg.pools.items()), s.urn
        else:
            rng = getattr(cfg.pools, pool).ip_range
            assert ip in rng, f"{s.urn}: private IP {ip} outside pool {pool} range {rng}"


def test_private_ips_and_names_are_unique(run: DryRun) -> None:
    servers = run.of_type(SERVER)
    ips = [s.inputs["networks"][0]["ip"] for s in servers]
    assert len(set(ips)) == len(ips)
    assert len({s.inputs["name"] for s in servers}) == len(servers)


def test_placement_groups_are_spread_and_within_hetzner_limit(run: DryRun) -> None:
    groups = run.of_type(PLACEMENT)
    members: dict[float, int] = {}
    for s in run.of_type(SERVER):
        members[s.inputs["placementGroupId"]] = members.get(s.inputs["placementGroupId"], 0) + 1
    for g in groups:
        assert g.inputs["type"] == "spread", f"{g.urn}: not a spread group"
    assert max(members.values()) <= SPREAD_GROUP_SIZE


def test_no_firewall_opens_protected_ports_to_the_world(run: DryRun) -> None:
    firewalls = run.of_type(FIREWALL)
    assert {f.inputs["labels"]["pool"] for f in firewalls} == {"ctrl", "ops", "build", "run", "dns"}
    for fw in firewalls:
        for rule in fw.inputs["rules"]:
            world = [s for s in rule.get("sourceIps", []) if ip_network(s).prefixlen == 0]
            if not world:
                continue
            opened = [p for p in PROTECTED if p in _ports(rule)]
            assert not opened, f"{fw.urn}: rule {rule} opens {opened} to {world}"


def test_firewall_sources_for_ssh_api_and_web(run: DryRun) -> None:
    cfg = _cfg(run)
    admin = set(cfg.firewall.admin_cidrs)
    robots = {f"{r.public_ipv4}/32" for r in cfg.robot_servers}
    for fw in run.of_type(FIREWALL):
        group = fw.inputs["labels"]["pool"]
        by_port: dict[tuple[str, str], set[str]] = {}
        for rule in fw.inputs["rules"]:
            by_port[(rule["protocol"], rule.get("port", ""))] = set(rule["sourceIps"])
        assert by_port[("tcp", "22")] == admin, f"{fw.urn}: SSH sources"
        if group == "ctrl":
            assert by_port[("tcp", "6443")] == {str(cfg.network.cidr), *admin}, fw.urn
        if robots and group != "dns":
            assert by_port[("tcp", "10250")] == robots, fw.urn
        if group == "run":
            for port in ("80", "443"):
                assert by_port[("tcp", port)] == set(cfg.cloudflare.ip_ranges), fw.urn
        else:
            assert ("tcp", "80") not in by_port and ("tcp", "443") not in by_port, fw.urn
        if group == "dns":
            assert ("tcp", "10250") not in by_port, fw.urn
            for proto in ("tcp", "udp"):
                assert by_port[(proto, "53")] == {"0.0.0.0/0", "::/0"}, fw.urn


def test_network_has_cloud_and_vswitch_subnets_exposed_to_vswitch(run: DryRun) -> None:
    cfg = _cfg(run)
    [net] = run.of_type(NETWORK)
    assert net.inputs["ipRange"] == str(cfg.network.cidr), net.urn
    subnets = {s.inputs["type"]: s for s in run.of_type(SUBNET)}
    assert subnets["cloud"].inputs["ipRange"] == str(cfg.network.cloud_subnet)
    if cfg.network.vswitch_subnet is None:
        assert "vswitch" not in subnets
    else:
        vs = subnets["vswitch"]
        assert vs.inputs["vswitchId"] == cfg.network.vswitch_id, vs.urn
        assert net.inputs["exposeRoutesToVswitch"] is True, net.urn


def test_every_cloud_resource_uses_the_explicit_provider_holding_the_token(run: DryRun) -> None:
    providers = {
        r.type.removeprefix("pulumi:providers:"): r.urn
        for r in run.resources
        if r.type.startswith("pulumi:providers:")
    }
    for r in run.custom():
        package = r.type.split(":", 1)[0]
        assert r.provider.startswith(f"{providers[package]}::"), (
            f"{r.urn}: uses provider {r.provider!r}, not the explicit {package} provider"
        )


def _origins(run: DryRun) -> list[dict[str, Any]]:
    [pool] = run.of_type(LB_POOL)
    return list(pool.inputs["origins"])


def test_lb_origins_are_exactly_the_run_nodes_cloud_and_robot(run: DryRun) -> None:
    inv = InventoryDocument.model_validate(run.exports[outputs.INVENTORY])
    run_hosts = {h.name: str(h.public_ipv4) for h in inv.pool("run")}
    origins = {o["name"]: o["address"] for o in _origins(run)}
    [pool] = run.of_type(LB_POOL)
    assert origins == run_hosts, f"{pool.urn}: origins {origins} != run nodes {run_hosts}"
    assert sorted(run.exports[outputs.LB_ORIGINS]) == sorted(run_hosts.values())
    robots = {h.name for h in inv.pool("run") if h.kind == "robot"}
    assert robots <= set(origins)


def test_lb_serves_the_apps_wildcard_from_the_run_pool(run: DryRun) -> None:
    cfg = _cfg(run)
    [lb] = run.of_type(LB)
    [pool] = run.of_type(LB_POOL)
    pool_id = run.exports[outputs.LB_POOL_ID]
    assert lb.inputs["name"] == f"*.apps.{cfg.domain}", lb.urn
    assert lb.inputs["defaultPools"] == [pool_id] and lb.inputs["fallbackPool"] == pool_id
    assert lb.inputs["zoneId"] == cfg.cloudflare.zone_id == run.exports[outputs.ZONE_ID]
    assert pool.inputs["monitor"], f"{pool.urn}: no health monitor"


def test_ns_records_point_at_the_dns_vm(run: DryRun) -> None:
    cfg = _cfg(run)
    records = {r.inputs["name"]: r for r in run.of_type(RECORD)}
    assert set(records) == {f"ns1.{cfg.domain}", f"ns2.{cfg.domain}"}
    for r in records.values():
        assert r.inputs["content"] == run.exports[outputs.DNS_PUBLIC_IPV4], r.urn
        assert r.inputs["type"] == "A" and r.inputs["proxied"] is False, r.urn


def test_inventory_lists_every_host_with_labels_and_taints(run: DryRun) -> None:
    cfg = _cfg(run)
    inv = InventoryDocument.model_validate(run.exports[outputs.INVENTORY])
    server_names = {s.inputs["name"] for s in run.of_type(SERVER)}
    robot_names = {r.name for r in cfg.robot_servers}
    assert {h.name for h in inv.hosts} == server_names | robot_names
    for h in inv.hosts:
        assert h.labels["pier.dev/pool"] == h.pool and h.public_ipv4 is not None, h.name
    assert inv.k3s_api_endpoint == run.exports[outputs.K3S_API_ENDPOINT]
    assert inv.k3s_api_endpoint == f"https://{cfg.pools.ctrl.node_ip(1)}:6443"
    assert inv.network.vswitch_id == cfg.network.vswitch_id
    for pool, pcfg in cfg.pools.items():
        for h in inv.pool(pool):
            assert [t.as_k3s_arg() for t in h.taints] == list(pcfg.taints), h.name


def test_exports_are_exactly_the_named_outputs(run: DryRun) -> None:
    """Readers of the stack (inventory, add-run-node, drift) look outputs up by the constants in
    stacks/infra/outputs.py: no export without one, no constant without an export."""
    assert set(run.exports) == set(outputs.ALL)


def test_outputs_that_hold_tokens_are_secret(run: DryRun) -> None:
    cfg = _cfg(run)
    tokens = _secret_pair(
        {HCLOUD_KEY: "hc-TOKEN-sentinel-1", CLOUDFLARE_KEY: "cf-TOKEN-sentinel-2"}, "test"
    )
    again = dry_run(cfg, tokens)
    providers = [r for r in again.resources if r.type.startswith("pulumi:providers:")]
    assert {p.name for p in providers} == {"hcloud", "cloudflare"}
    for p in providers:
        token_keys = {k for k in p.inputs if "token" in k.lower()}
        assert token_keys and token_keys <= p.secret_inputs, f"{p.urn}: {token_keys} not secret"
    # No registered resource or export may carry a token in plain text.
    for r in again.resources:
        plain = {k: v for k, v in r.inputs.items() if k not in r.secret_inputs}
        assert "TOKEN-sentinel" not in json.dumps(plain, default=str), f"{r.urn} leaks a token"
    for key, value in again.exports.items():
        if "TOKEN-sentinel" in json.dumps(value, default=str):
            assert again.secret_exports[key], f"export {key} holds a token but is not secret"
    assert not any(again.secret_exports.values())  # no export needs a token today


def _with_run_count(raw: Callable[[str], dict[str, Any]], env: str, delta: int) -> DryRun:
    data = raw(env)
    data["pools"]["run"]["count"] += delta
    return dry_run(config.validate(data))


def test_adding_a_run_node_adds_exactly_one_origin_and_keeps_the_others(
    raw: Callable[[str], dict[str, Any]],
) -> None:
    before = _with_run_count(raw, "staging", 0)
    after = _with_run_count(raw, "staging", 1)
    old = {o["name"]: o["address"] for o in _origins(before)}
    new = {o["name"]: o["address"] for o in _origins(after)}
    assert set(new) - set(old) == {"staging-run-3"}
    assert {k: new[k] for k in old} == old
    ips = {s.inputs["name"]: s.inputs["networks"][0]["ip"] for s in after.of_type(SERVER)}
    assert ips["staging-run-3"] == "10.0.16.3"
    assert len(after.exports[outputs.LB_ORIGINS]) == len(before.exports[outputs.LB_ORIGINS]) + 1


def test_eleventh_run_node_gets_a_second_spread_group(raw: Callable[[str], dict[str, Any]]) -> None:
    data = raw("minimal")
    data["pools"]["run"]["count"] = 11
    result = dry_run(config.validate(data))
    run_groups = [g for g in result.of_type(PLACEMENT) if g.inputs["labels"]["pool"] == "run"]
    assert sorted(g.inputs["name"] for g in run_groups) == [
        "mini-run-spread-1",
        "mini-run-spread-2",
    ]
    servers = {s.inputs["name"]: s for s in result.of_type(SERVER)}
    first = servers["mini-run-1"].inputs["placementGroupId"]
    assert all(servers[f"mini-run-{i}"].inputs["placementGroupId"] == first for i in range(1, 11))
    assert servers["mini-run-11"].inputs["placementGroupId"] != first
