"""upgrade-k3s.yml and remove-run-node.yml on real test hosts: a ctrl node and a run node.

kubectl is the one step that needs a cluster. The stand-in k3s (files/k3s-standin, not k3s)
records every `k3s kubectl` call with a timestamp and reports nodes Ready, so these tests check
what the playbooks do around it: the order (drain, restart on the new binary, wait for Ready,
uncordon), one node at a time with servers first, nothing when the version is current, and a
clean host after removal.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests import testhosts
from tests.ansible import harness

pytestmark = [pytest.mark.slow, pytest.mark.podman]

NEW_VERSION = "v1.31.5+k3s1"


@dataclass
class Cluster:
    lab: harness.Lab
    ctrl: testhosts.Host
    run: testhosts.Host


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with harness.lab([["ctrl"], ["run"]], tag="pb") as lab:
        ctrl, run = lab.nodes
        # With the stand-in answering kubectl, the roles' wait-for-Ready steps run too.
        first = lab.playbook(
            "site.yml",
            "-e",
            "k3s_server_wait_ready=true",
            "-e",
            "k3s_agent_wait_ready=true",
            "-e",
            '{"firewall_admin_sources": ["203.0.113.0/24"]}',
        )
        assert first.rc == 0, first.output[-5000:]
        yield Cluster(lab, ctrl, run)


def _log(host: testhosts.Host) -> list[tuple[float, str, str]]:
    out = testhosts.exec_in(host, "cat", "/run/k3s-standin.log")
    entries = []
    for line in out.splitlines():
        stamp, kind, rest = line.split(" ", 2)
        entries.append((float(stamp), kind, rest))
    return entries


def _kubectl_after(c: Cluster, since: float) -> list[tuple[float, str]]:
    return [(t, rest) for t, kind, rest in _log(c.ctrl) if kind == "kubectl" and t > since]


def _last_start(host: testhosts.Host) -> float:
    return max(t for t, kind, _ in _log(host) if kind == "start")


def test_agent_joins_with_server_config(cluster: Cluster) -> None:
    lab = cluster.lab
    server = testhosts.exec_in(cluster.ctrl, "cat", "/etc/rancher/k3s/config.yaml")
    assert "cluster-init: true" in server
    # ctrl's group_vars reach the server's config.
    assert "secrets-encryption: true" in server
    assert f"advertise-address: {cluster.ctrl.ip(lab.priv)}" in server
    assert testhosts.exec_in(cluster.ctrl, "systemctl", "is-active", "k3s").strip() == "active"
    # The roles asked the first server whether each node is Ready.
    asked = [rest for _, rest in _kubectl_after(cluster, 0)]
    assert any(r.startswith(f"get node {cluster.ctrl.name} ") for r in asked), asked
    assert any(r.startswith(f"get node {cluster.run.name} ") for r in asked), asked


def test_api_port_private_and_admin_only(cluster: Cluster) -> None:
    ruleset = testhosts.exec_in(cluster.ctrl, "nft", "list", "table", "inet", "pier_filter")
    assert "ip saddr @admin_sources tcp dport 6443 accept" in ruleset, ruleset
    assert "203.0.113.0/24" in ruleset
    assert re.search(r"ip saddr @private_sources tcp dport \{[^}]*\b6443\b", ruleset), ruleset
    # The run node is no server: its API port is not open at all.
    assert "6443" not in testhosts.exec_in(
        cluster.run, "nft", "list", "table", "inet", "pier_filter"
    )


def test_upgrade_one_node_at_a_time(cluster: Cluster) -> None:
    lab = cluster.lab
    new = lab.workdir / "www" / "k3s-next"
    new.write_text(
        harness.STANDIN_K3S.read_text().replace(
            'VERSION = "v1.31.4+k3s1"', f'VERSION = "{NEW_VERSION}"'
        )
    )
    args = [
        "-e",
        f"pier_k3s_version={NEW_VERSION}",
        "-e",
        f"pier_k3s_artifact_url={lab.artifact_url.rsplit('/', 1)[0]}/k3s-next",
        "-e",
        f"pier_k3s_sha256={harness.sha256(new)}",
    ]
    since = max(t for t, _, _ in _log(cluster.ctrl))
    run = lab.playbook("upgrade-k3s.yml", *args)
    assert run.rc == 0, run.output[-5000:]
    calls = _kubectl_after(cluster, since)
    verbs = [
        (rest.split()[0], rest.split()[1] if rest.split()[0] != "get" else rest.split()[2])
        for _, rest in calls
    ]
    ctrl, node = cluster.ctrl.name, cluster.run.name
    assert verbs == [
        ("drain", ctrl),
        ("get", ctrl),
        ("uncordon", ctrl),
        ("drain", node),
        ("get", node),
        ("uncordon", node),
    ], calls
    # Each node restarted on the new binary between its drain and its uncordon.
    for i, host in enumerate((cluster.ctrl, cluster.run)):
        drained, uncordoned = calls[3 * i][0], calls[3 * i + 2][0]
        assert drained < _last_start(host) < uncordoned
        assert NEW_VERSION in testhosts.exec_in(host, "k3s", "--version")
    again = lab.playbook("upgrade-k3s.yml", *args, quiet_ok=True)
    assert again.rc == 0 and again.changed() == 0, again.output[-4000:]


def test_remove_run_node_cleans_host(cluster: Cluster) -> None:
    since = max(t for t, _, _ in _log(cluster.ctrl))
    run = cluster.lab.playbook("remove-run-node.yml", "--limit", cluster.run.name)
    assert run.rc == 0, run.output[-5000:]
    calls = [rest.split()[:3] for _, rest in _kubectl_after(cluster, since)]
    assert calls == [
        ["drain", cluster.run.name, "--ignore-daemonsets"],
        ["delete", "node", cluster.run.name],
    ], calls
    leftover = testhosts.exec_in(
        cluster.run,
        "sh",
        "-c",
        "ls -d /usr/local/bin/k3s /etc/rancher/k3s /etc/systemd/system/k3s-agent.service"
        " 2>/dev/null; systemctl is-active k3s-agent",
        check=False,
    )
    assert leftover.split() in (["inactive"], ["unknown"]), leftover
    # The server is untouched.
    assert testhosts.exec_in(cluster.ctrl, "systemctl", "is-active", "k3s").strip() == "active"
