import sys
from pathlib import Path

import pytest

from stacks.nodes import probes
from tests.stacks.nodes import standins


def test_banner_is_required_not_just_a_tcp_accept() -> None:
    with standins.ssh_banner_server(b"HTTP/1.1 400 Bad Request\r\n") as port:
        with pytest.raises(probes.ProbeTimeout, match="not with an SSH banner"):
            probes.wait_for_ssh("127.0.0.1", port, timeout=0.3, interval=0.05)


def test_waits_until_sshd_answers() -> None:
    seen: list[str] = []
    with standins.ssh_banner_server() as port:
        banner = probes.wait_for_ssh("127.0.0.1", port, timeout=2, on_attempt=seen.append)
    assert banner == "SSH-2.0-OpenSSH_9.2p1 standin"
    assert seen == []


def test_refused_port_times_out_with_the_last_error() -> None:
    seen: list[str] = []
    port = standins.free_port()
    with pytest.raises(probes.ProbeTimeout, match=f"127.0.0.1:{port} within 0.3s .*refused"):
        probes.wait_for_ssh("127.0.0.1", port, timeout=0.3, interval=0.05, on_attempt=seen.append)
    assert len(seen) >= 2


@pytest.mark.parametrize(
    ("node", "ready"),
    [
        ({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, True),
        ({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}, False),
        ({"status": {"conditions": [{"type": "DiskPressure", "status": "True"}]}}, None),
        ({"metadata": {}}, None),
    ],
)
def test_node_ready(node: dict[str, object], ready: bool | None) -> None:
    assert probes.node_ready(node) is ready


def test_kubectl_not_found_is_named(tmp_path: Path) -> None:
    with pytest.raises(probes.ProbeTimeout, match="cannot run '/nonexistent/kubectl'"):
        probes.wait_for_node_ready("n1", ["/nonexistent/kubectl"], "kc", timeout=1)


def test_kubectl_errors_are_reported(tmp_path: Path) -> None:
    kubectl = standins.kubectl(tmp_path, ["other"])
    with pytest.raises(probes.ProbeTimeout, match=r'nodes "n1" not found'):
        probes.wait_for_node_ready("n1", kubectl, "kc", timeout=0.3, interval=0.05)
    garbage = tmp_path / "garbage"
    garbage.write_text(f"#!{sys.executable}\nprint('[1, 2]')\n")
    garbage.chmod(0o755)
    with pytest.raises(probes.ProbeTimeout, match="not a node object"):
        probes.wait_for_node_ready("n1", [str(garbage)], "kc", timeout=0.3, interval=0.05)
