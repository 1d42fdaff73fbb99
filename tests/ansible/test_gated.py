"""What this machine cannot run, run for real where it can: a k3s server from a real binary
(PIER_K3S_BINARY) and the vSwitch VLAN brought up on a kernel with 802.1Q support."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest
import yaml

from tests import testhosts
from tests.ansible import harness

pytestmark = [pytest.mark.slow, pytest.mark.podman, pytest.mark.gated]

K3S_BINARY = os.environ.get("PIER_K3S_BINARY", "")


def kernel_has_vlan() -> bool:
    """Whether this kernel can create 802.1Q links (tried in a throwaway network namespace)."""
    ns = f"pier-vlt-{secrets.token_hex(3)}"
    if subprocess.run(["ip", "netns", "add", ns], capture_output=True, check=False).returncode:
        return False
    try:
        steps = [
            ["ip", "-n", ns, "link", "add", "d0", "type", "dummy"],
            [
                "ip",
                "-n",
                ns,
                "link",
                "add",
                "link",
                "d0",
                "name",
                "d0.5",
                "type",
                "vlan",
                "id",
                "5",
            ],
        ]
        return all(
            subprocess.run(step, capture_output=True, check=False).returncode == 0 for step in steps
        )
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@pytest.mark.skipif(
    not kernel_has_vlan(), reason="this kernel has no 802.1Q VLAN support (type vlan unknown)"
)
def test_vswitch_vlan_comes_up() -> None:
    with harness.lab([["run", "robot"]], tag="vlan") as lab:
        run = lab.playbook("base.yml", "-e", "vswitch_apply=true")
        assert run.rc == 0, run.output[-5000:]
        node = lab.nodes[0]
        route = testhosts.exec_in(node, "ip", "-o", "route", "show", "default")
        vlan = f"{route.split(' dev ')[1].split()[0]}.{harness.VLAN_ID}"
        link = testhosts.exec_in(node, "ip", "-d", "link", "show", vlan)
        assert f"vlan protocol 802.1Q id {harness.VLAN_ID}" in link
        assert "mtu 1400" in link
        routes = testhosts.exec_in(node, "ip", "route", "show", str(lab.network_cidr))
        assert f"dev {vlan}" in routes
        again = lab.playbook("base.yml", "-e", "vswitch_apply=true")
        assert again.recap[node.name]["changed"] == 0, again.output[-5000:]


@pytest.mark.skipif(
    not (K3S_BINARY and Path(K3S_BINARY).is_file()),
    reason="no k3s binary here: set PIER_K3S_BINARY to a k3s executable to start a real server",
)
def test_real_k3s_server_becomes_ready() -> None:
    with harness.lab([["ctrl"]], tag="k3s", artifact=Path(K3S_BINARY), privileged=True) as lab:
        run = lab.playbook("site.yml", "-e", "k3s_server_wait_ready=true", timeout=900)
        assert run.rc == 0, run.output[-5000:]
        node = lab.nodes[0]
        nodes = yaml.safe_load(
            testhosts.exec_in(node, "k3s", "kubectl", "get", "nodes", "-o", "yaml", timeout=60)
        )
        (item,) = nodes["items"]
        ready = {c["type"]: c["status"] for c in item["status"]["conditions"]}["Ready"]
        assert ready == "True"
        assert item["metadata"]["labels"]["pier.dev/pool"] == "ctrl"
