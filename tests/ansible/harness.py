"""A converge lab for pier's Ansible: real test hosts (tests/testhosts.py) on a private-range and
a public-range podman network, an inventory in the shape the inventory builder produces, a local
HTTP server serving the k3s artifact, and ansible-playbook runs with their PLAY RECAP parsed.

Used by tests/ansible/ and bench/ansible_converge.py.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import yaml

from tests import testhosts

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = ROOT / "ansible"
PLAYBOOKS = ANSIBLE_DIR / "playbooks"
STANDIN_K3S = Path(__file__).parent / "files" / "k3s-standin"
# The tools of the interpreter running the tests (the venv), wherever the checkout is.
VENV_BIN = Path(sys.executable).parent
RECAP = re.compile(
    r"^(?P<host>\S+)\s+: ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)"
    r"\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)\s+rescued=(?P<rescued>\d+)"
    r"\s+ignored=(?P<ignored>\d+)",
    re.MULTILINE,
)
VLAN_ID = 4000


def _bin(name: str) -> str:
    local = VENV_BIN / name
    return str(local) if local.exists() else name


@dataclass
class PlaybookRun:
    rc: int
    output: str
    seconds: float
    recap: dict[str, dict[str, int]]

    def changed(self) -> int:
        return sum(stats["changed"] for stats in self.recap.values())

    def failed(self) -> int:
        return sum(stats["failed"] + stats["unreachable"] for stats in self.recap.values())


class ArtifactServer:
    """Serves files from a directory over HTTP on `bind` (a podman gateway address, so test
    hosts can download from it and nothing outside this machine can)."""

    def __init__(self, directory: Path, bind: str) -> None:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer((bind, 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> ArtifactServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Lab:
    """Hosts and networks of one converge lab; see `lab()`."""

    prefix: str
    workdir: Path
    priv: testhosts.Network
    pub: testhosts.Network
    network_cidr: IPv4Network
    nodes: list[testhosts.Host]
    peers: dict[str, testhosts.Host]
    artifact_url: str
    artifact_sha256: str
    inventory: Path
    overrides: Path
    k3s_token: str
    powerdns_api_key: str
    domain: str = "pier.test"
    groups: dict[str, list[str]] = field(default_factory=dict)

    def playbook(
        self,
        name: str,
        *args: str,
        quiet_ok: bool = False,
        timeout: float = 600,
    ) -> PlaybookRun:
        return run_playbook(
            PLAYBOOKS / name,
            self.inventory,
            "-e",
            f"@{self.overrides}",
            *args,
            quiet_ok=quiet_ok,
            timeout=timeout,
            control_dir=self.workdir / "cp",
        )


def ansible_env(control_dir: Path | None = None) -> dict[str, str]:
    env = testhosts.ansible_env(ANSIBLE_DIR)
    control = control_dir or Path(tempfile.mkdtemp(prefix="pier-cp-"))
    control.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            # Test hosts reuse addresses across runs with new host keys.
            "ANSIBLE_SSH_ARGS": (
                "-o ControlMaster=auto -o ControlPersist=120s -o UserKnownHostsFile=/dev/null "
                "-o StrictHostKeyChecking=no -o LogLevel=ERROR"
            ),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control),
            "ANSIBLE_REMOTE_USER": "root",
            "ANSIBLE_FORCE_COLOR": "0",
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    return env


def run_playbook(
    playbook: Path,
    inventory: Path,
    *args: str,
    quiet_ok: bool = False,
    timeout: float = 600,
    control_dir: Path | None = None,
) -> PlaybookRun:
    """Run ansible-playbook; `quiet_ok` hides ok/skipped tasks so only changes are listed."""
    env = ansible_env(control_dir)
    if quiet_ok:
        env["ANSIBLE_DISPLAY_OK_HOSTS"] = "false"
        env["ANSIBLE_DISPLAY_SKIPPED_HOSTS"] = "false"
    start = time.monotonic()
    result = subprocess.run(
        [_bin("ansible-playbook"), "-i", str(inventory), str(playbook), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    seconds = time.monotonic() - start
    output = result.stdout + result.stderr
    recap = {
        m["host"]: {k: int(v) for k, v in m.groupdict().items() if k != "host"}
        for m in RECAP.finditer(result.stdout)
    }
    return PlaybookRun(rc=result.returncode, output=output, seconds=seconds, recap=recap)


def _first_free_network(name: str, subnets: Iterable[str]) -> testhosts.Network | None:
    """The network `name` on the first of `subnets` that podman accepts (one may be taken)."""
    for subnet in subnets:
        with contextlib.suppress(testhosts.TestHostError):
            return testhosts.create_network(name, subnet)
    return None


def _create_networks(prefix: str) -> tuple[testhosts.Network, testhosts.Network, IPv4Network]:
    """A private 10.X.1.0/24 inside the 'cloud network' 10.X.0.0/16 and a public-looking
    198.18-19.Y.0/24 (RFC 2544 benchmarking range: never routed on the internet). Subnets are
    random so parallel runs do not collide; a taken one is retried."""
    rng = random.Random(secrets.randbits(32))
    priv = _first_free_network(
        f"{prefix}-priv", (f"10.{rng.randrange(100, 250)}.1.0/24" for _ in range(20))
    )
    pub = _first_free_network(
        f"{prefix}-pub",
        (f"198.{18 + y // 256}.{y % 256}.0/24" for y in (rng.randrange(0, 512) for _ in range(20))),
    )
    if priv is None or pub is None:
        raise testhosts.TestHostError("no free subnet for the lab's podman networks")
    cidr = IPv4Network(f"{priv.subnet.network_address}/16", strict=False)
    return priv, pub, cidr


def _inventory(
    lab_nodes: Sequence[testhosts.Host],
    groups: dict[str, list[str]],
    priv: testhosts.Network,
    pub: testhosts.Network,
    cidr: IPv4Network,
    domain: str,
) -> dict[str, Any]:
    """The inventory in the shape of the variable contract (see the board / ansible/inventory)."""
    base = cidr.network_address
    host_groups = {
        h.name: [g for g, members in groups.items() if h.name in members] for h in lab_nodes
    }
    hostvars: dict[str, Any] = {}
    for node in lab_nodes:
        pool = next(
            (g for g in ("ctrl", "ops", "build", "run", "dns") if g in host_groups[node.name]),
            "run",
        )
        hostvars[node.name] = {
            "ansible_host": str(node.ip(priv)),
            "pier_pool": pool,
            "pier_kind": "robot" if "robot" in host_groups[node.name] else "cloud",
            "pier_private_ip": str(node.ip(priv)),
            "pier_public_ipv4": str(node.ip(pub)),
            "pier_location": "fsn1",
            "pier_node_labels": {"pier.dev/pool": pool},
            "pier_node_taints": [f"pier.dev/pool={pool}:NoSchedule"] if pool != "run" else [],
        }
    children: dict[str, Any] = {
        g: {"hosts": {n: None for n in members}}
        for g, members in groups.items()
        if g != "k3s_cluster"
    }
    for g in ("ctrl", "ops", "build", "run", "dns", "robot"):
        children.setdefault(g, {"hosts": {}})
    children["k3s_cluster"] = {"children": {g: None for g in ("ctrl", "ops", "build", "run")}}
    return {
        "all": {
            "hosts": hostvars,
            "vars": {
                "pier_env": "test",
                "pier_domain": domain,
                "pier_network_cidr": str(cidr),
                "pier_cloud_subnet": str(priv.subnet),
                "pier_vswitch_subnet": str(IPv4Network(f"{base + 2 * 256}/24")),
                "pier_vswitch_id": 12345,
                "pier_vswitch_vlan": VLAN_ID,
                "pier_vswitch_gateway": str(IPv4Address(int(base) + 2 * 256 + 1)),
                "pier_k3s_api_endpoint": f"{priv.subnet.network_address + 5}:6443",
                "pier_registry": f"{priv.subnet.network_address + 6}:5000",
            },
            "children": children,
        }
    }


@contextlib.contextmanager
def lab(
    node_groups: Sequence[Sequence[str]],
    *,
    peers: Sequence[str] = (),
    tag: str = "lab",
    artifact: Path = STANDIN_K3S,
    privileged: bool = False,
) -> Iterator[Lab]:
    """Start one systemd test host per entry of `node_groups` (the groups it belongs to),
    optional peers (`priv`, `pub`: plain containers on one network each), serve `artifact` as
    the k3s binary, write inventory + test overrides, and remove everything afterwards."""
    testhosts.ensure_image()
    prefix = testhosts.unique_prefix(tag)
    workdir = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    created_hosts: list[str] = []
    nets: list[testhosts.Network] = []
    try:
        priv, pub, cidr = _create_networks(prefix)
        nets = [priv, pub]
        names = [f"{prefix}-n{i + 1}" for i in range(len(node_groups))]
        created_hosts.extend(names)
        nodes = testhosts.start_hosts(names, [priv, pub], privileged=privileged)
        peer_hosts: dict[str, testhosts.Host] = {}
        for i, peer in enumerate(peers):
            net = priv if peer.startswith("priv") else pub
            name = f"{prefix}-{peer}"
            created_hosts.append(name)
            peer_hosts[peer] = testhosts.start_hosts(
                [name], [net], systemd=False, first_index=100 + i
            )[0]
        groups: dict[str, list[str]] = {}
        for name, member_of in zip(names, node_groups, strict=True):
            for g in member_of:
                groups.setdefault(g, []).append(name)
        files = workdir / "www"
        files.mkdir()
        shutil.copy(artifact, files / "k3s")
        domain = "pier.test"
        inventory = workdir / "inventory.yml"
        inventory.write_text(yaml.safe_dump(_inventory(nodes, groups, priv, pub, cidr, domain)))
        token = f"K10{secrets.token_hex(24)}::server:{secrets.token_hex(16)}"
        api_key = secrets.token_urlsafe(24)
        with ArtifactServer(files, str(priv.gateway)) as server:
            overrides = workdir / "overrides.yml"
            overrides.write_text(
                yaml.safe_dump(
                    {
                        "pier_k3s_artifact_url": f"{server.base_url}/k3s",
                        "pier_k3s_sha256": sha256(files / "k3s"),
                        # Secrets the real inventory reads from Vault (pier_vault_kv lookup).
                        "pier_k3s_token": token,
                        "pier_powerdns_api_key": api_key,
                        # This kernel has no 802.1Q: the vSwitch file is rendered and validated
                        # (ifup --no-act), not brought up (tests/ansible gated test does that).
                        "vswitch_apply": False,
                        # No cluster exists: the stand-in k3s starts but no node becomes Ready.
                        "k3s_agent_wait_ready": False,
                        "k3s_server_wait_ready": False,
                    }
                )
            )
            yield Lab(
                prefix=prefix,
                workdir=workdir,
                priv=priv,
                pub=pub,
                network_cidr=cidr,
                nodes=nodes,
                peers=peer_hosts,
                artifact_url=f"{server.base_url}/k3s",
                artifact_sha256=sha256(files / "k3s"),
                inventory=inventory,
                overrides=overrides,
                k3s_token=token,
                powerdns_api_key=api_key,
                domain=domain,
                groups=groups,
            )
    finally:
        testhosts.remove_all(created_hosts, nets)
        shutil.rmtree(workdir, ignore_errors=True)
