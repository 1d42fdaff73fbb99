"""Converge site.yml on a real (systemd-in-podman) host, then check what the roles promise from
the host itself and from peer hosts on a private-range and a public-range network.

The node is in the dns, build, run and robot groups, so one converge exercises every role that
does not need a running cluster: common, hardening, firewall, vswitch (rendered and validated;
this kernel has no 802.1Q), powerdns, registry_client and k3s_agent/k3s_install (with a stand-in
k3s executable served over HTTP: no k3s binary exists here, see files/k3s-standin).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests import testhosts
from tests.ansible import harness

pytestmark = [pytest.mark.slow, pytest.mark.podman]

METADATA = "169.254.169.254"


@dataclass
class Converged:
    lab: harness.Lab
    node: testhosts.Host
    first: harness.PlaybookRun
    second: harness.PlaybookRun
    metadata_before: bool
    # How often the first converge started k3s (the stand-in logs each start) and fail2ban.
    k3s_starts: int
    fail2ban_starts: int


def _metadata_peer(lab: harness.Lab) -> testhosts.Host:
    """The `priv` peer plays the cloud metadata service: it owns 169.254.169.254 and serves HTTP
    there. The node gets a host route to it, so probes of the metadata address stay inside the
    lab network instead of following the default route off this machine."""
    peer = lab.peers["meta"]
    testhosts.exec_in(peer, "ip", "addr", "add", f"{METADATA}/32", "dev", "eth0")
    testhosts.podman(
        "exec",
        "-d",
        peer.name,
        "python3",
        "-m",
        "http.server",
        "--bind",
        METADATA,
        "80",
    )
    return peer


@pytest.fixture(scope="module")
def converged() -> Iterator[Converged]:
    with harness.lab(
        [["dns", "build", "run", "robot"]], peers=["priv", "pub", "privmeta"], tag="cv"
    ) as lab:
        lab.peers["meta"] = lab.peers.pop("privmeta")
        node = lab.nodes[0]
        meta = _metadata_peer(lab)
        testhosts.exec_in(
            node, "ip", "route", "add", f"{METADATA}/32", "via", str(meta.ip(lab.priv))
        )
        # Control: before the firewall, the node reaches the metadata service.
        before = _wait_tcp(node, METADATA, 80)
        # The image's fail2ban may have tried (and failed) to start at boot: count from here.
        fail2ban_booted = _unit_starts(node, "fail2ban")
        first = lab.playbook("site.yml")
        assert first.rc == 0, first.output[-5000:]
        k3s_starts = _k3s_starts(node)
        fail2ban_starts = _unit_starts(node, "fail2ban") - fail2ban_booted
        second = lab.playbook("site.yml", quiet_ok=True)
        yield Converged(lab, node, first, second, before, k3s_starts, fail2ban_starts)


def _k3s_starts(node: testhosts.Host) -> int:
    log = testhosts.exec_in(node, "cat", "/run/k3s-standin.log")
    return sum(1 for line in log.splitlines() if line.split()[1:2] == ["start"])


def _unit_starts(node: testhosts.Host, unit: str) -> int:
    """Start jobs systemd finished for `unit` since boot (a restart is one more)."""
    journal = testhosts.exec_in(
        node, "journalctl", "--no-pager", "-o", "cat", "-u", f"{unit}.service", check=False
    )
    return sum(1 for line in journal.splitlines() if line.startswith("Started "))


def _wait_tcp(src: testhosts.Host, address: str, port: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if testhosts.probe_tcp(src, address, port):
            return True
        time.sleep(0.3)
    return False


def _sh(c: Converged, script: str, check: bool = True) -> str:
    return testhosts.exec_in(c.node, "sh", "-c", script, check=check)


def test_second_run_changes_nothing(converged: Converged) -> None:
    run = converged.second
    assert run.rc == 0, run.output[-5000:]
    assert run.recap[converged.node.name]["changed"] == 0, (
        f"second converge changed tasks:\n{run.output[-5000:]}"
    )


def test_fresh_converge_starts_each_service_once(converged: Converged) -> None:
    """A service the converge starts reads its new configuration already: the handlers for
    changed files do not restart it a second time (a k3s restart in the middle of a fresh join
    only delays the join)."""
    assert converged.k3s_starts == 1, _sh(converged, "cat /run/k3s-standin.log")
    assert converged.fail2ban_starts == 1, _sh(
        converged, "journalctl --no-pager -u fail2ban.service", check=False
    )


def test_changed_registries_restart_k3s_once(converged: Converged) -> None:
    """registries.yaml alone changing (registry_client) restarts k3s through k3s_install's
    handler, once; changing it back does the same."""
    lab = converged.lab
    pool = ["-e", "pier_agent_pool=run"]
    before = _k3s_starts(converged.node)
    mirrored = lab.playbook(
        "k3s-agents.yml", *pool, "-e", '{"registry_client_mirrored": ["docker.io"]}'
    )
    assert mirrored.rc == 0, mirrored.output[-4000:]
    registries = yaml.safe_load(_sh(converged, "cat /etc/rancher/k3s/registries.yaml"))
    assert "docker.io" in registries["mirrors"]
    assert _k3s_starts(converged.node) == before + 1
    restored = lab.playbook("k3s-agents.yml", *pool)
    assert restored.rc == 0, restored.output[-4000:]
    assert _k3s_starts(converged.node) == before + 2
    assert _sh(converged, "systemctl is-active k3s-agent").strip() == "active"


def test_secrets_never_logged(converged: Converged) -> None:
    for run in (converged.first, converged.second):
        assert converged.lab.k3s_token not in run.output
        assert converged.lab.powerdns_api_key not in run.output


def test_ssh_refuses_passwords(converged: Converged) -> None:
    # sshd lists the methods it still offers; the image's default config also offers password.
    methods = _ssh_methods(converged)
    assert methods == {"publickey"}, methods
    effective = _sh(
        converged, "sshd -T | grep -Ei '^(passwordauthentication|kbdinteractiveauthentication) '"
    )
    assert "passwordauthentication no" in effective.lower()
    assert "kbdinteractiveauthentication no" in effective.lower()


def _ssh_methods(c: Converged) -> set[str]:
    result = subprocess.run(
        [
            "podman",
            "exec",
            c.lab.peers["priv"].name,
            "ssh",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "PubkeyAuthentication=no",
            f"root@{c.node.ip(c.lab.priv)}",
            "true",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    match = re.search(r"Permission denied \(([^)]*)\)", result.stderr)
    assert match, result.stderr
    return set(match.group(1).split(","))


def test_metadata_address_unreachable(converged: Converged) -> None:
    assert converged.metadata_before, "control failed: metadata peer unreachable before converge"
    assert not testhosts.probe_tcp(converged.node, METADATA, 80)
    # The metadata peer still serves: only the node's egress is blocked.
    meta = converged.lab.peers["meta"]
    assert testhosts.probe_tcp(meta, METADATA, 80)


def test_registry_port_private_only(converged: Converged) -> None:
    lab, node = converged.lab, converged.node
    _sh(converged, "systemd-run --unit pier-test-5000 python3 -m http.server 5000")
    _sh(converged, "systemd-run --unit pier-test-9999 python3 -m http.server 9999")
    assert _wait_tcp(node, "127.0.0.1", 5000) and _wait_tcp(node, "127.0.0.1", 9999)
    assert testhosts.probe_tcp(lab.peers["priv"], node.ip(lab.priv), 5000)
    assert not testhosts.probe_tcp(lab.peers["pub"], node.ip(lab.pub), 5000)
    # Control: the public peer does reach the node (SSH is public), so 5000 is filtered.
    assert testhosts.probe_tcp(lab.peers["pub"], node.ip(lab.pub), 22)
    # Default deny: a port no group opens is closed even to the private network.
    assert not testhosts.probe_tcp(lab.peers["priv"], node.ip(lab.priv), 9999)


def test_powerdns_answers_and_api_is_private(converged: Converged) -> None:
    lab, node = converged.lab, converged.node
    for peer, net in (("priv", lab.priv), ("pub", lab.pub)):
        answer = testhosts.exec_in(
            lab.peers[peer],
            "dig",
            "+short",
            "+time=2",
            "+tries=1",
            f"@{node.ip(net)}",
            lab.domain,
            "SOA",
        )
        assert answer.startswith(f"ns1.{lab.domain}."), (peer, answer)
    url = f"http://{node.ip(lab.priv)}:8081/api/v1/servers/localhost/zones"
    # From this machine (the private network's gateway): the API works with the key only.
    assert httpx.get(url, headers={"X-API-Key": lab.powerdns_api_key}, timeout=5).status_code == 200
    assert httpx.get(url, headers={"X-API-Key": "wrong"}, timeout=5).status_code == 401
    assert testhosts.probe_tcp(lab.peers["priv"], node.ip(lab.priv), 8081)
    assert not testhosts.probe_tcp(lab.peers["pub"], node.ip(lab.pub), 8081)
    listening = _sh(converged, "ss -Hltn 'sport = :8081'")
    assert f"{node.ip(lab.priv)}:8081" in listening, listening


def test_k3s_agent_files(converged: Converged) -> None:
    lab, node = converged.lab, converged.node
    config = yaml.safe_load(_sh(converged, "cat /etc/rancher/k3s/config.yaml"))
    assert config["node-ip"] == str(node.ip(lab.priv))
    # flannel runs over the interface that holds the private IP.
    private_iface = _sh(converged, f"ip -o -4 addr show to {node.ip(lab.priv)}").split()[1]
    assert config["flannel-iface"] == private_iface
    assert config["node-label"] == ["pier.dev/pool=build"]
    assert config["node-taint"] == ["pier.dev/pool=build:NoSchedule"]
    assert "max-pods=800" in config["kubelet-arg"]
    assert "serialize-image-pulls=false" in config["kubelet-arg"]
    assert config["server"] == f"https://{lab.priv.subnet.network_address + 5}:6443"
    assert config["token-file"] == "/etc/rancher/k3s/token"
    assert lab.k3s_token not in _sh(converged, "cat /etc/rancher/k3s/config.yaml")
    assert _sh(converged, "stat -c %a /etc/rancher/k3s/token").strip() == "600"
    assert _sh(converged, "cat /etc/rancher/k3s/token").strip() == lab.k3s_token
    _sh(converged, "systemd-analyze verify /etc/systemd/system/k3s-agent.service")
    unit = _sh(converged, "cat /etc/systemd/system/k3s-agent.service")
    assert "ExecStart=/usr/local/bin/k3s agent --config /etc/rancher/k3s/config.yaml" in unit
    assert _sh(converged, "systemctl is-active k3s-agent").strip() == "active"
    assert _sh(converged, "tail -n 1 /run/k3s-standin.log").split()[1:3] == ["start", "agent"]
    registries = yaml.safe_load(_sh(converged, "cat /etc/rancher/k3s/registries.yaml"))
    registry = f"{lab.priv.subnet.network_address + 6}:5000"
    assert registries["mirrors"][registry]["endpoint"] == [f"http://{registry}"]


def test_vswitch_config_is_valid(converged: Converged) -> None:
    lab = converged.lab
    base = lab.network_cidr.network_address
    # The VLAN rides on the uplink of the default route (here the public-range network).
    parent = _sh(converged, "ip -o route show default").split(" dev ")[1].split()[0]
    vlan = f"{parent}.{harness.VLAN_ID}"
    text = _sh(converged, "cat /etc/network/interfaces.d/60-pier-vswitch")
    assert f"iface {vlan} inet static" in text
    assert f"vlan-raw-device {parent}" in text
    plan = _sh(converged, f"ifup --no-act {vlan} 2>&1")
    assert f"ip link add link {parent} name {vlan} type vlan id {harness.VLAN_ID}" in plan
    assert f"ip link set dev {vlan} mtu 1400" in plan
    assert f"ip addr add {converged.node.ip(lab.priv)}/255.255.255.0" in plan
    assert f"ip route replace {lab.network_cidr} via {base + 2 * 256 + 1} dev {vlan}" in plan


def test_hardening_and_common(converged: Converged) -> None:
    sysctl = _sh(converged, "cat /etc/sysctl.d/90-pier-hardening.conf")
    assert "net.ipv4.conf.all.accept_redirects = 0" in sysctl
    assert "net.ipv4.ip_forward = 1" in sysctl
    assert "Currently failed" in _sh(converged, "fail2ban-client status sshd")
    auto = _sh(converged, "cat /etc/apt/apt.conf.d/52pier-unattended-upgrades")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in auto
    assert "NTP=ntp1.hetzner.de" in _sh(converged, "cat /etc/systemd/timesyncd.conf")


def test_wrong_k3s_checksum_fails_clearly(converged: Converged) -> None:
    lab = converged.lab
    before = _sh(converged, "sha256sum /usr/local/bin/k3s").split()[0]
    run = lab.playbook(
        "k3s-agents.yml", "-e", "pier_agent_pool=run", "-e", "pier_k3s_sha256=" + "0" * 64
    )
    assert run.rc != 0
    assert "does not match pier_k3s_sha256" in run.output, run.output[-3000:]
    assert "Nothing was installed" in run.output
    assert (
        _sh(converged, "sha256sum /usr/local/bin/k3s").split()[0] == before == lab.artifact_sha256
    )


def test_new_k3s_version_replaces_binary_and_restarts(converged: Converged) -> None:
    """The binary half of upgrade-k3s.yml: a new pinned version (URL + checksum) replaces the
    binary and restarts the unit once; the run after that changes nothing."""
    lab = converged.lab
    new = lab.workdir / "www" / "k3s-next"
    new.write_text(
        harness.STANDIN_K3S.read_text().replace(
            'VERSION = "v1.31.4+k3s1"', 'VERSION = "v1.31.5+k3s1"'
        )
    )
    pid_before = _sh(converged, "systemctl show -p MainPID --value k3s-agent").strip()
    args = [
        "-e",
        "pier_agent_pool=run",
        "-e",
        "pier_k3s_version=v1.31.5+k3s1",
        "-e",
        f"pier_k3s_artifact_url={lab.artifact_url.rsplit('/', 1)[0]}/k3s-next",
        "-e",
        f"pier_k3s_sha256={harness.sha256(new)}",
    ]
    run = lab.playbook("k3s-agents.yml", *args)
    assert run.rc == 0, run.output[-4000:]
    assert "v1.31.5+k3s1" in _sh(converged, "k3s --version")
    assert _sh(converged, "systemctl is-active k3s-agent").strip() == "active"
    assert _sh(converged, "systemctl show -p MainPID --value k3s-agent").strip() != pid_before
    again = lab.playbook("k3s-agents.yml", *args, quiet_ok=True)
    assert again.rc == 0 and again.changed() == 0, again.output[-4000:]


def test_node_playbooks_refuse_to_run_without_limit(converged: Converged) -> None:
    for playbook, message in (
        ("add-run-node.yml", "pass --limit NEW_HOST"),
        ("remove-run-node.yml", "needs --limit HOST"),
    ):
        run = converged.lab.playbook(playbook)
        assert run.rc != 0
        assert message in run.output, run.output[-3000:]
    assert _sh(converged, "systemctl is-active k3s-agent").strip() == "active"


@pytest.mark.parametrize(
    ("role", "setting", "message"),
    [
        (
            "k3s_agent",
            "pier_k3s_sha256=",
            "the artifact's sha256 as 64 hex characters in pier_k3s_sha256",
        ),
        ("vswitch", "pier_vswitch_vlan=5000", "a VLAN id in 1-4094 (got '5000')"),
        ("firewall", '{"firewall_public_tcp_ports": ["http"]}', "firewall_public_tcp_ports"),
    ],
)
def test_bad_settings_stop_with_a_clear_message(
    converged: Converged, role: str, setting: str, message: str
) -> None:
    lab = converged.lab
    run = harness.run_playbook(
        Path(__file__).parent / "playbooks" / "role.yml",
        lab.inventory,
        "-e",
        f"@{lab.overrides}",
        "-e",
        f"pier_test_role={role}",
        "-e",
        setting,
        control_dir=lab.workdir / "cp",
    )
    assert run.rc != 0
    assert " ".join(message.split()) in " ".join(run.output.split()), run.output[-3000:]
    assert run.changed() == 0


def test_firewall_persists_across_reboot(converged: Converged) -> None:
    node = converged.node
    testhosts.podman("restart", "-t", "2", node.name)
    testhosts.wait_ssh(node)
    deadline = time.monotonic() + 20
    while "pier_filter" not in _sh(converged, "nft list tables", check=False):
        assert time.monotonic() < deadline, "pier_filter table not loaded after reboot"
        time.sleep(0.5)
    assert not testhosts.probe_tcp(node, METADATA, 80)
    ruleset = _sh(converged, "nft list table inet pier_filter")
    assert re.search(r"ip saddr @private_sources tcp dport \{[^}]*\b5000\b", ruleset), ruleset
