"""The contract between the infra stack and this area, checked with the real infra program
under Pulumi's mocks (`stacks.infra.dryrun`): its exported inventory document becomes an Ansible
inventory that `ansible-inventory` reads, and add-run-node's config edit is what the program
turns into one more server, one more inventory host and one more LB origin."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from stacks.common.inventory import InventoryDocument
from stacks.infra import config as infra_config
from stacks.infra.outputs import INVENTORY, LB_ORIGINS
from stacks.nodes import add_run_node as arn
from stacks.nodes import inventory
from stacks.nodes.add_run_node import Options, Toolchain
from tests.stacks.nodes import standins

# pulumi_cloudflare warns about its own deprecated resource types when imported.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
STACK_FILES = sorted(infra_config.STACK_DIR.glob("Pulumi.*.yaml"))


def _exports(stack_file: Path) -> dict[str, Any]:
    # Imported here, inside the tests, so the filter above covers the provider's import warnings.
    from stacks.infra.dryrun import dry_run

    return dry_run(infra_config.load_file(stack_file)).exports


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_the_programs_inventory_reads_in_ansible(stack_file: Path, tmp_path: Path) -> None:
    exports = _exports(stack_file)
    doc = inventory.document_from_outputs(exports, stack_file.name)
    admin_cidrs = list(infra_config.load_file(stack_file).firewall.admin_cidrs)
    assert admin_cidrs, "the example stacks name admin networks"
    path = inventory.write_inventory(doc, tmp_path)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(path), "--list"],
        capture_output=True,
        text=True,
        check=False,
        env={"ANSIBLE_INVENTORY_UNPARSED_FAILED": "true", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    hostvars = data["_meta"]["hostvars"]
    assert set(hostvars) == {h.name for h in doc.hosts}
    for host in doc.hosts:
        assert host.name in data[host.pool]["hosts"]
        assert hostvars[host.name]["pier_private_ip"] == str(host.private_ip)
        assert hostvars[host.name]["pier_env"] == doc.env
        # The stack's admin networks reach the host firewall (admin ports such as 6443).
        assert hostvars[host.name]["pier_admin_cidrs"] == admin_cidrs
    robots = {h.name for h in doc.hosts if h.kind == "robot"}
    assert set(data.get("robot", {}).get("hosts", [])) == robots
    # Every run host the LB sends traffic to is reachable by Ansible at that address.
    run_addresses = {hostvars[n]["ansible_host"] for n in data["run"]["hosts"]}
    assert set(exports[LB_ORIGINS]) <= run_addresses


class MockedInfra:
    """`pulumi up` = the real infra program under mocks, on the config file on disk. The mock
    provider's public IPv4 of `reach` is translated to 127.0.0.1 in every output (a NAT from
    the mock address to the local SSH stand-in)."""

    def __init__(self, stacks_dir: Path, reach: str) -> None:
        self.stacks_dir = stacks_dir
        self.reach = reach
        self.ups = 0

    def up(self, env: str, on_output: Any = None) -> dict[str, Any]:
        self.ups += 1
        exports = _exports(self.stacks_dir / f"Pulumi.{env}.yaml")
        doc = exports[INVENTORY]
        [host] = [h for h in doc["hosts"] if h["name"] == self.reach]
        mock_ip = host["public_ipv4"]
        text = json.dumps({INVENTORY: doc, LB_ORIGINS: exports[LB_ORIGINS]})
        translated: dict[str, Any] = json.loads(text.replace(f'"{mock_ip}"', '"127.0.0.1"'))
        return translated

    def outputs(self, env: str) -> dict[str, Any]:
        raise AssertionError("a full run reuses the outputs of `up`")


@pytest.fixture
def banner_port() -> Iterator[int]:
    with standins.ssh_banner_server() as port:
        yield port


def test_add_run_node_through_the_real_program(tmp_path: Path, banner_port: int) -> None:
    stack_file = infra_config.stack_file("staging")
    stacks_dir = tmp_path / "stacks"
    stacks_dir.mkdir()
    (stacks_dir / stack_file.name).write_text(stack_file.read_text())
    before = InventoryDocument.model_validate(_exports(stack_file)[INVENTORY])
    run_before = before.pool("run")

    (tmp_path / "ansible" / "playbooks").mkdir(parents=True)
    (tmp_path / "ansible" / "playbooks" / "add-run-node.yml").write_text("---\n")
    infra = MockedInfra(stacks_dir, reach="edge-9")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\n")
    tools = Toolchain(
        pulumi_up=infra.up,
        pulumi_outputs=infra.outputs,
        ansible_playbook=standins.ansible(tmp_path)[0],
        kubectl=standins.kubectl(tmp_path, ["edge-9"]),
        kubeconfig=str(kubeconfig),
    )
    opts = Options(
        env="staging",
        name="edge-9",
        stacks_dir=stacks_dir,
        ansible_dir=tmp_path / "ansible",
        inventory_dir=tmp_path / "generated",
        ssh_port=banner_port,
        ssh_timeout=5,
        ready_timeout=5,
        poll_interval=0.05,
    )
    console = Console(record=True, width=200)
    result = arn.add_run_node(opts, tools, console)
    assert result.steps_run == [1, 2, 3, 4, 5, 6, 7], console.export_text()
    assert infra.ups == 1

    after = InventoryDocument.model_validate(infra.up("staging")[INVENTORY])
    run_after = after.pool("run")
    # Existing run nodes keep their names and private IPs; the new one takes the next index.
    kept = {h.name: h.private_ip for h in run_after if h.name != "edge-9"}
    assert kept == {h.name: h.private_ip for h in run_before}
    [new] = [h for h in run_after if h.name == "edge-9"]
    cfg = infra_config.load_file(stacks_dir / stack_file.name)
    assert new.private_ip == cfg.pools.run.node_ip(cfg.pools.run.count)
