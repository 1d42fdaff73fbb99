"""Real test hosts for Ansible: systemd inside podman, on podman networks the test run creates.

Importable by any test (and by bench/): build the cached image if it is missing, start N hosts
on one or more podman networks with unique names, hand back how to reach them over SSH, and
remove exactly what was started. Nothing here talks to an address outside 127.0.0.0/8 or the
podman networks created here (apt inside the image build talks to the Debian mirror only).

    from tests.testhosts import ensure_image, create_network, start_hosts, remove_all
    net = create_network("pier-t-abc-priv", "10.213.7.0/24")
    hosts = start_hosts(["pier-t-abc-h1"], [net])
    ...
    remove_all(hosts, [net])
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

IMAGE = "localhost/pier-testhost:bookworm"
# Label on everything created here, so cleanup only ever touches our own containers/networks.
LABEL = "pier.testhost=1"
CACHE_DIR = Path(os.environ.get("PIER_TESTHOST_CACHE", Path.home() / ".cache" / "pier-testhost"))
MIRROR = "http://deb.debian.org/debian"
# Packages baked into the image. Besides what the recipe needs (systemd, sshd, python3), the
# packages the roles install are pre-seeded so converging stays offline and fast; the roles'
# apt tasks still run and would install them on a bare host.
IMAGE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "systemd-timesyncd",
    "openssh-server",
    "python3",
    "python3-apt",
    "python3-systemd",
    "iptables",
    "iproute2",
    "dbus",
    "nftables",
    "ifupdown",
    "ca-certificates",
    "unattended-upgrades",
    "fail2ban",
    "pdns-server",
    "pdns-backend-sqlite3",
    "sqlite3",
    "bind9-dnsutils",
    "curl",
)
# Root's password inside test hosts: set so that "SSH refuses passwords" is a real check (the
# password would work if sshd accepted passwords). These hosts live only on podman networks.
ROOT_PASSWORD = "pier-testhost-password"


class TestHostError(RuntimeError):
    """A test host could not be built or started; the message says what to check."""


@dataclass(frozen=True)
class Network:
    name: str
    subnet: IPv4Network

    @property
    def gateway(self) -> IPv4Address:
        return next(self.subnet.hosts())


@dataclass(frozen=True)
class Host:
    name: str
    # network name -> this host's address on it
    addresses: dict[str, IPv4Address] = field(default_factory=dict)

    @property
    def ssh_host(self) -> str:
        """Rootful podman bridge addresses are reachable from this machine directly."""
        return str(next(iter(self.addresses.values())))

    ssh_port: int = 22

    def ip(self, network: Network | str) -> IPv4Address:
        name = network.name if isinstance(network, Network) else network
        return self.addresses[name]


def _run(args: Sequence[str], *, check: bool = True, timeout: float = 300) -> str:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise TestHostError(f"`{' '.join(args)}` failed ({result.returncode}): {result.stderr}")
    return result.stdout


def podman(*args: str, check: bool = True, timeout: float = 300) -> str:
    return _run(["podman", *args], check=check, timeout=timeout)


def unique_prefix(tag: str = "t") -> str:
    """A name prefix unique to this test run, so parallel runs never collide."""
    return f"pier-{tag}-{secrets.token_hex(3)}"


def ssh_key() -> Path:
    """Private key whose public half every test host accepts for root (generated once)."""
    key = CACHE_DIR / "id_ed25519"
    if not key.exists():
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pier-testhost", "-f", str(key)])
    return key


def image_exists(image: str = IMAGE) -> bool:
    return subprocess.run(["podman", "image", "exists", image], check=False).returncode == 0


def ensure_image(image: str = IMAGE) -> str:
    """Build the test-host image with debootstrap unless it is cached (about 2 minutes)."""
    if image_exists(image):
        return image
    if shutil.which("debootstrap") is None:
        raise TestHostError("debootstrap is missing: run `invoke test` (installs it) or apt-get it")
    with tempfile.TemporaryDirectory(prefix="pier-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(IMAGE_PACKAGES)}",
                "bookworm",
                str(rootfs),
                MIRROR,
            ],
            timeout=900,
        )
        (rootfs / "etc/machine-id").write_text("")
        (rootfs / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
        # Services the roles manage start disabled, as on a fresh cloud image.
        for unit in ("pdns.service", "fail2ban.service", "nftables.service"):
            for wants in (rootfs / "etc/systemd/system").glob(f"*.wants/{unit}"):
                wants.unlink()
        _run(["chroot", str(rootfs), "sh", "-c", f"echo 'root:{ROOT_PASSWORD}' | chpasswd"])
        _run(["chroot", str(rootfs), "apt-get", "clean"])
        tar = subprocess.Popen(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE
        )
        imported = subprocess.run(
            [
                "podman",
                "import",
                "--change",
                'CMD ["/sbin/init"]',
                "--change",
                "STOPSIGNAL=SIGRTMIN+3",
                "-",
                image,
            ],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
        tar.wait()
        if imported.returncode != 0:
            raise TestHostError(f"podman import failed: {imported.stderr}")
    return image


def create_network(name: str, subnet: str) -> Network:
    """A podman bridge network with a fixed subnet (its traffic never leaves this machine
    except through podman's NAT, which tests only use for the image build's apt)."""
    podman("network", "create", "--label", LABEL, "--subnet", subnet, name)
    return Network(name=name, subnet=IPv4Network(subnet))


def start_hosts(
    names: Sequence[str],
    networks: Sequence[Network],
    *,
    image: str = IMAGE,
    systemd: bool = True,
    first_index: int = 10,
    privileged: bool = False,
) -> list[Host]:
    """Start one container per name, attached to every network with a fixed address
    (`first_index` + position in `names`), and wait until SSH answers."""
    if not networks:
        raise TestHostError("start_hosts needs at least one network")
    pub = ssh_key().with_suffix(".pub")
    hosts: list[Host] = []
    for i, name in enumerate(names):
        addresses = {n.name: n.subnet.network_address + first_index + i for n in networks}
        # A fixed MAC per address: podman gives a restarted container a new random MAC, which
        # this machine's stale neighbour entry then keeps sending to for a long while.
        nets = [
            f"--network={n.name}:ip={addresses[n.name]},mac={_mac(addresses[n.name])}"
            for n in networks
        ]
        cmd = ["/sbin/init"] if systemd else ["sleep", "infinity"]
        # Real k3s needs a privileged container (cgroups, modules, iptables); opt-in only.
        extra = ["--privileged"] if privileged else []
        podman(
            "run",
            "-d",
            "--name",
            name,
            "--hostname",
            name,
            "--label",
            LABEL,
            "--systemd=always" if systemd else "--systemd=false",
            "--cap-add",
            "NET_ADMIN,NET_RAW",
            "--stop-timeout",
            "2",
            "-v",
            f"{pub}:/root/.ssh/authorized_keys:ro",
            *extra,
            *nets,
            image,
            *cmd,
        )
        hosts.append(Host(name=name, addresses=addresses))
    if systemd:
        for host in hosts:
            wait_ssh(host)
    return hosts


def _mac(address: IPv4Address) -> str:
    """A locally administered MAC derived from the address."""
    return "02:50:" + ":".join(f"{b:02x}" for b in address.packed)


def wait_ssh(host: Host, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with (
            contextlib.suppress(OSError),
            socket.create_connection((host.ssh_host, host.ssh_port), timeout=1) as sock,
        ):
            if sock.recv(4).startswith(b"SSH-"):
                return
        if time.monotonic() > deadline:
            raise TestHostError(f"{host.name}: no SSH on {host.ssh_host}:22 after {timeout}s")
        time.sleep(0.2)


def exec_in(host: Host | str, *cmd: str, check: bool = True, timeout: float = 60) -> str:
    """Run a command inside a host's container (not over SSH: works whatever its firewall does)."""
    name = host.name if isinstance(host, Host) else host
    return podman("exec", name, *cmd, check=check, timeout=timeout)


def probe_tcp(src: Host, address: IPv4Address | str, port: int, timeout: float = 2) -> bool:
    """Whether `src` can open a TCP connection to address:port."""
    code = (
        "import socket,sys\n"
        "try:\n"
        f"    socket.create_connection(({str(address)!r}, {port}), timeout={timeout}).close()\n"
        "except OSError:\n"
        "    sys.exit(1)\n"
    )
    result = subprocess.run(
        ["podman", "exec", src.name, "python3", "-c", code],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout + 30,
    )
    return result.returncode == 0


def remove_all(hosts: Sequence[Host | str], networks: Sequence[Network | str] = ()) -> None:
    """Remove exactly these containers and networks (never anything else)."""
    names = [h.name if isinstance(h, Host) else h for h in hosts]
    if names:
        podman("rm", "-f", "-t", "0", *names, check=False)
    for net in networks:
        podman("network", "rm", "-f", net.name if isinstance(net, Network) else net, check=False)


def ansible_env(ansible_dir: Path) -> dict[str, str]:
    """Environment for ansible-playbook against test hosts: the repo's ansible.cfg, our key."""
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(ansible_dir / "ansible.cfg"),
        "ANSIBLE_PRIVATE_KEY_FILE": str(ssh_key()),
        "ANSIBLE_HOST_KEY_CHECKING": "false",
        "ANSIBLE_NOCOLOR": "1",
    }


@contextlib.contextmanager
def running_hosts(
    names: Sequence[str], networks: Sequence[tuple[str, str]], **kwargs: object
) -> Iterator[tuple[list[Host], list[Network]]]:
    """Create networks (name, subnet), start hosts on them, and remove both afterwards."""
    ensure_image()
    nets: list[Network] = []
    hosts: list[Host] = []
    try:
        for name, subnet in networks:
            nets.append(create_network(name, subnet))
        hosts = start_hosts(names, nets, **kwargs)  # type: ignore[arg-type]
        yield hosts, nets
    finally:
        remove_all([*hosts, *names], nets)
