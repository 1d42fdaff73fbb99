"""`invoke plan`: the real program under mocks, a tree grouped by pool, and a topology SVG."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

from stacks.common.inventory import InventoryDocument
from stacks.infra import config, plan
from stacks.infra.config import InfraConfigError
from stacks.infra.dryrun import SERVER, dry_run
from stacks.infra.outputs import INVENTORY
from stacks.infra.topology import MAX_ROWS, render_svg
from tests.stacks.infra.conftest import minimal_raw


def _plan(env: str, tmp_path: Path) -> tuple[plan.PlanResult, str]:
    buf = io.StringIO()
    result = plan.plan(env, tmp_path, Console(file=buf, width=200, color_system=None))
    return result, buf.getvalue()


def _svg_text(path: Path) -> str:
    root = ET.parse(path).getroot()  # raises if the SVG is not well-formed XML
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))


def test_plan_prod_prints_tree_by_pool_and_writes_topology(tmp_path: Path) -> None:
    result, out = _plan("prod", tmp_path)
    cfg = config.load_file(config.stack_file("prod"))
    assert result.svg == tmp_path / "topology.svg" and str(result.svg) in out
    for pool, pcfg in cfg.pools.items():
        assert f"pool {pool} (1 Firewall, 1 PlacementGroup, {pcfg.count} Server)" in out
    assert "PowerDNS VM (1 Firewall, 1 PlacementGroup, 1 Server)" in out
    assert "(2 DnsRecord, 1 LoadBalancer, 1 LoadBalancerMonitor, 1 LoadBalancerPool)" in out
    assert "prod-run-r1  Robot server" in out and "prod-build-r1  Robot server" in out
    assert f"{len(result.run.custom())} cloud resources" in out
    text = _svg_text(result.svg)
    for needle in (
        "run pool",
        "ctrl pool",
        "PowerDNS VM",
        "load balancer *.apps.prod.pier.example.net",
        "origin pool: 8 run nodes",
        "private network 10.0.0.0/16",
        "cloud subnet 10.0.0.0/17",
        "vSwitch subnet 10.0.128.0/24",
        "prod-run-r1",
        "DNS records ns1, ns2",
        "443/tcp from cloudflare",
    ):
        assert needle in text, needle


def test_plan_accepts_a_config_path_and_defaults_under_dot_pier(tmp_path: Path) -> None:
    assert plan.default_out_dir("staging").parts[-3:] == (".pier", "plan", "staging")
    src = config.stack_file("staging").read_text().replace("count: 2", "count: 25")
    path = tmp_path / "big.yaml"
    path.write_text(src)
    result, out = _plan(str(path), tmp_path / "out")
    assert len([r for r in result.run.of_type(SERVER) if "-run-" in r.name]) == 25
    assert "... and 13 more servers" in out
    assert f"... and {26 - MAX_ROWS} more" in _svg_text(result.svg)


def test_plan_refuses_bad_config_before_evaluating(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(config.stack_file("staging").read_text().replace("count: 1", "count: 2", 1))
    with pytest.raises(InfraConfigError, match=r"^bad.yaml: pools.ctrl.count: 2 is even"):
        _plan(str(path), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_svg_escapes_text_and_skips_missing_vswitch() -> None:
    run = dry_run(config.validate(minimal_raw()))
    inv = InventoryDocument.model_validate(run.exports[INVENTORY])
    svg = render_svg(inv, {"run": ["80/tcp from <&>"]}, "*.apps.<x>")
    ET.fromstring(svg)
    assert "&lt;&amp;&gt;" in svg and "vSwitch" not in svg


def _can_unshare_net() -> bool:
    import shutil
    import subprocess

    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.mark.slow
def test_invoke_plan_works_without_network_or_credentials(tmp_path: Path) -> None:
    import subprocess
    import sys

    if not _can_unshare_net():
        pytest.skip("needs `unshare -n` (root or user namespaces) to cut the network off")
    invoke = Path(sys.executable).parent / "invoke"
    result = subprocess.run(
        ["unshare", "-n", str(invoke), "plan", "--env", "prod", "--out", str(tmp_path)],
        # A bare environment: no VAULT_*, no PULUMI_*, no provider tokens.
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        cwd=config.STACK_DIR.parents[1],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "pool run (1 Firewall, 1 PlacementGroup, 6 Server)" in result.stdout
    assert "PowerDNS VM" in _svg_text(tmp_path / "topology.svg")
