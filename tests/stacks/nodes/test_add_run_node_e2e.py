"""add-run-node end to end on a real test host: the real config edit, inventory refresh, SSH wait
and the real `ansible-playbook playbooks/add-run-node.yml --limit <host>`; only pulumi and
kubectl (no CLI and no cluster on this machine) are stand-ins. test_add_run_node_live.py runs the
whole flow for real where pulumi, kubectl and a live environment exist."""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console
from ruamel.yaml import YAML

from stacks.nodes import add_run_node as arn
from stacks.nodes import inventory, stack_config
from stacks.nodes.add_run_node import Options, StepFailed, Toolchain
from tests import testhosts
from tests.ansible import harness
from tests.stacks.nodes import standins
from tests.stacks.nodes.sample import write_stack

pytestmark = [pytest.mark.slow, pytest.mark.podman]
NEW_NODE = "edge-1"


@pytest.fixture(scope="module")
def lab() -> Iterator[harness.Lab]:
    if shutil.which("podman") is None:
        pytest.skip("podman is missing: `invoke test` installs it")
    with harness.lab([["run"]], tag="arn") as lab:
        yield lab


def test_add_run_node_converges_a_real_host_and_resumes_after_a_failed_playbook(
    lab: harness.Lab, tmp_path: Path
) -> None:
    node = lab.nodes[0]
    stacks_dir = tmp_path / "stacks"
    config = write_stack(stacks_dir)
    fake = standins.FakePulumi(
        "staging",
        stacks_dir,
        overrides={
            NEW_NODE: {
                "public_ipv4": str(node.ip(lab.pub)),
                "private_ip": str(node.ip(lab.priv)),
            }
        },
        # The lab's podman networks play the cloud network and the internet.
        doc_overrides={
            "network": {"cidr": str(lab.network_cidr), "cloud_subnet": str(lab.priv.subnet)},
            "k3s_api_endpoint": f"https://{lab.priv.subnet.network_address + 5}:6443",
            "registry": f"{lab.priv.subnet.network_address + 6}:5000",
        },
    )
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    tools = Toolchain(
        pulumi_up=fake.up,
        pulumi_outputs=fake.outputs,
        ansible_playbook=[str(Path(sys.executable).parent / "ansible-playbook")],
        # Test-only values (local k3s artifact and its checksum, a token instead of Vault, no
        # cluster to join), the same the roles' own converge tests use.
        ansible_args=["-e", f"@{lab.overrides}"],
        ansible_env=harness.ansible_env(tmp_path / "cp"),
        kubectl=standins.kubectl(tmp_path, [NEW_NODE], ready_after=2),
        kubeconfig=str(kubeconfig),
    )
    opts = Options(
        env="staging",
        name=NEW_NODE,
        stacks_dir=stacks_dir,
        inventory_dir=tmp_path / "generated",
        ssh_timeout=60,
        ready_timeout=30,
        poll_interval=0.2,
    )
    # First attempt: the artifact's checksum is wrong, so the playbook (step 5) must fail and
    # say how to resume; the node is already in the config and the inventory by then.
    wrong = replace(tools, ansible_args=[*tools.ansible_args, "-e", f"pier_k3s_sha256={'0' * 64}"])
    console = Console(record=True, width=200)
    with pytest.raises(StepFailed) as failed:
        arn.add_run_node(opts, wrong, console)
    assert failed.value.step == 5, console.export_text()
    assert "ansible-playbook exited 2" in str(failed.value)
    assert failed.value.resume == (
        f"invoke add-run-node --env staging --name {NEW_NODE} --from-step 5"
    )
    assert "checksum" in console.export_text().lower()
    testhosts.exec_in(node, "test", "!", "-e", "/usr/local/bin/k3s")

    # Resume as the message says, with the right checksum.
    console = Console(record=True, width=200)
    result = arn.add_run_node(replace(opts, from_step=5), tools, console)
    out = console.export_text()

    assert result.steps_run == [5, 6, 7], out
    assert stack_config.node_names("staging", stacks_dir)["run"] == [
        "staging-run-1",
        "staging-run-2",
        NEW_NODE,
    ]
    assert "names:" in config.read_text()
    generated = inventory.inventory_path("staging", tmp_path / "generated")
    hosts = YAML(typ="safe").load(generated.read_text())["all"]["children"]["run"]["hosts"]
    assert hosts[NEW_NODE]["ansible_host"] == str(node.ip(lab.pub))
    recap = rf"^\s*{NEW_NODE}\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0\s"
    assert re.search(recap, out, re.MULTILINE), out

    # The playbook configured the host from the inventory's variables: k3s config with the
    # node's name and private IP and the run pool's kubelet args, and the pinned binary.
    k3s_config = testhosts.exec_in(node, "cat", "/etc/rancher/k3s/config.yaml")
    assert NEW_NODE in k3s_config
    assert str(node.ip(lab.priv)) in k3s_config
    assert "max-pods=800" in k3s_config
    testhosts.exec_in(node, "test", "-x", "/usr/local/bin/k3s")
