"""The Ansible inventory built from the infra stack's document, checked by Ansible itself."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stacks.common.inventory import InventoryDocument
from stacks.infra.outputs import INVENTORY
from stacks.nodes import inventory
from stacks.nodes.inventory import InventorySourceError
from tests.stacks.nodes.sample import document, write_stack

ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"


def _doc(tmp_path: Path) -> dict[str, Any]:
    raw = document("staging", write_stack(tmp_path / "stack").parent)
    raw["network"].update(
        vswitch_subnet="10.0.128.0/24",
        vswitch_id=41000,
        vswitch_vlan=4000,
        vswitch_gateway="10.0.128.1",
    )
    raw["hosts"].append(
        {
            "name": "staging-robot-1",
            "pool": "run",
            "kind": "robot",
            "public_ipv4": "198.51.100.7",
            "private_ip": "10.0.128.10",
            "location": "fsn1-dc14",
            "labels": {"pier.dev/pool": "run", "pier.dev/kind": "robot"},
        }
    )
    raw["hosts"].append({**raw["hosts"][-1], "name": "priv-1", "public_ipv4": None})
    return raw


def _ansible_list(path: Path) -> dict[str, Any]:
    result = subprocess.run(
        [str(ANSIBLE_INVENTORY), "-i", str(path), "--list"],
        capture_output=True,
        text=True,
        check=False,
        env={"ANSIBLE_INVENTORY_UNPARSED_FAILED": "true", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_ansible_reads_groups_and_vars_per_contract(tmp_path: Path) -> None:
    doc = InventoryDocument.model_validate(_doc(tmp_path))
    path = inventory.write_inventory(doc, tmp_path / "generated")
    assert path == tmp_path / "generated" / "staging.yml"
    data = _ansible_list(path)
    hostvars = data["_meta"]["hostvars"]

    def members(group: str) -> set[str]:
        return set(data.get(group, {}).get("hosts", []))

    assert members("ctrl") == {"staging-ctrl-1"}
    assert members("ops") == {"staging-ops-1"}
    assert members("build") == {"staging-build-1"}
    assert members("run") == {"staging-run-1", "staging-run-2", "staging-robot-1", "priv-1"}
    assert members("dns") == {"staging-dns"}
    assert members("robot") == {"staging-robot-1", "priv-1"}
    assert set(data["k3s_cluster"]["children"]) == {"ctrl", "ops", "build", "run"}
    assert "dns" not in data["k3s_cluster"]["children"]

    robot = hostvars["staging-robot-1"]
    assert robot["ansible_host"] == "198.51.100.7"
    assert robot["pier_pool"] == "run"
    assert robot["pier_kind"] == "robot"
    assert robot["pier_private_ip"] == "10.0.128.10"
    assert robot["pier_public_ipv4"] == "198.51.100.7"
    assert robot["pier_location"] == "fsn1-dc14"
    assert robot["pier_node_labels"] == {"pier.dev/pool": "run", "pier.dev/kind": "robot"}
    assert robot["pier_node_taints"] == []
    # Without a public address Ansible goes over the private network.
    assert hostvars["priv-1"]["ansible_host"] == "10.0.128.10"
    assert hostvars["priv-1"]["pier_public_ipv4"] is None
    assert hostvars["staging-ctrl-1"]["pier_node_taints"] == ["pier.dev/pool=ctrl:NoSchedule"]

    # all-group vars reach every host (ansible-inventory --list folds them into hostvars).
    expected_all = {
        "pier_env": "staging",
        "pier_domain": "staging.example.net",
        "pier_network_cidr": "10.0.0.0/16",
        "pier_cloud_subnet": "10.0.0.0/17",
        "pier_vswitch_subnet": "10.0.128.0/24",
        "pier_vswitch_id": 41000,
        "pier_vswitch_vlan": 4000,
        "pier_vswitch_gateway": "10.0.128.1",
        "pier_k3s_api_endpoint": "https://10.0.1.1:6443",
        "pier_registry": "10.0.3.1:5000",
        "pier_admin_cidrs": [],
    }
    for name in ("staging-dns", "staging-run-1"):
        assert {k: hostvars[name][k] for k in expected_all} == expected_all


def test_empty_pools_are_still_groups(tmp_path: Path) -> None:
    raw = _doc(tmp_path)
    raw["hosts"] = [h for h in raw["hosts"] if h["pool"] == "ctrl"]
    path = inventory.write_inventory(InventoryDocument.model_validate(raw), tmp_path)
    data = _ansible_list(path)
    for group in ("ops", "build", "run", "dns", "robot", "k3s_cluster"):
        assert group in data["all"]["children"]
    assert data["ctrl"]["hosts"] == ["staging-ctrl-1"]


@pytest.mark.parametrize("shape", ["stack-output", "stack-output-json-string", "bare-document"])
def test_load_document_from_saved_files(tmp_path: Path, shape: str) -> None:
    raw = _doc(tmp_path)
    key = INVENTORY
    content: dict[str, Any]
    if shape == "stack-output":
        content = {key: raw, "lb_origins": ["203.0.113.81"]}
    elif shape == "stack-output-json-string":
        content = {key: json.dumps(raw)}
    else:
        content = raw
    saved = tmp_path / "outputs.json"
    saved.write_text(json.dumps(content))
    doc = inventory.load_document(saved)
    assert doc == InventoryDocument.model_validate(raw)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"lb_origins": []}', "no inventory document"),
        ('{"inventory": "{broken"}', "`inventory` is not JSON"),
    ],
)
def test_bad_saved_files_are_named(tmp_path: Path, content: str, message: str) -> None:
    saved = tmp_path / "outputs.json"
    saved.write_text(content)
    with pytest.raises(InventorySourceError, match=message) as info:
        inventory.load_document(saved)
    assert str(saved) in str(info.value)


def test_invalid_document_names_the_field(tmp_path: Path) -> None:
    raw = _doc(tmp_path)
    raw["hosts"][0]["private_ip"] = "10.0.1.300"
    with pytest.raises(
        InventorySourceError, match=r"invalid inventory document at `hosts.0.private_ip`"
    ):
        inventory.document_from_outputs(raw, "test")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InventorySourceError, match="no such file"):
        inventory.load_document(tmp_path / "absent.json")


def test_rewrite_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    doc = InventoryDocument.model_validate(_doc(tmp_path))
    out = tmp_path / "gen"
    first = inventory.write_inventory(doc, out).read_text()
    inventory.write_inventory(doc, out)
    assert [p.name for p in out.iterdir()] == ["staging.yml"]
    assert (out / "staging.yml").read_text() == first
    assert first.startswith("# Generated by `invoke nodes.inventory`")


def test_refresh_from_the_stack_or_a_saved_file(tmp_path: Path) -> None:
    raw = _doc(tmp_path)
    asked: list[str] = []

    def fetch(env: str) -> dict[str, Any]:
        asked.append(env)
        return {INVENTORY: raw}

    path, doc = inventory.refresh("staging", directory=tmp_path / "gen", fetch=fetch)
    assert asked == ["staging"]
    assert path == tmp_path / "gen" / "staging.yml"
    assert len(doc.hosts) == len(raw["hosts"])
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps({INVENTORY: raw}))
    again, _ = inventory.refresh("staging", from_file=saved, directory=tmp_path / "gen2")
    assert again.read_text() == path.read_text()


def test_refresh_refuses_another_envs_document(tmp_path: Path) -> None:
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps(_doc(tmp_path)))
    with pytest.raises(InventorySourceError, match="the document is for env 'staging', not 'prod'"):
        inventory.refresh("prod", from_file=saved, directory=tmp_path / "gen")
    assert not (tmp_path / "gen").exists()


def test_generated_file_passes_yamllint(tmp_path: Path) -> None:
    # `invoke dev.lint` runs yamllint --strict over ansible/, generated files included.
    path = inventory.write_inventory(InventoryDocument.model_validate(_doc(tmp_path)), tmp_path)
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "yamllint"),
            "--strict",
            "-c",
            str(root / ".yamllint.yml"),
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout
