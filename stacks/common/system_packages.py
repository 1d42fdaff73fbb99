"""Debian packages pier's tasks and tests need, installed on demand.

The machines pier's tests run on are fresh Debian 12 hosts, so every task that needs a system
binary (podman, PowerDNS, a registry, PostgreSQL, debootstrap) installs it through here instead
of assuming it is present.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

# One entry per area, so each area can say what it needs without touching the others.
PACKAGES: dict[str, tuple[str, ...]] = {
    "podman": ("podman", "runc", "busybox-static", "uidmap", "slirp4netns", "fuse-overlayfs"),
    "deployer": ("postgresql",),
    "ansible": (
        "debootstrap",
        "openssh-client",
        "sshpass",
        "iproute2",
        "iptables",
        "pdns-server",
        "pdns-backend-sqlite3",
        "sqlite3",
        "dnsutils",
        "docker-registry",
        "skopeo",
    ),
    "infra": (),
}

# crun fails on this cgroup-v1 host and the default ulimits are refused inside the sandbox;
# runc with no default ulimits works everywhere we run.
CONTAINERS_CONF = """\
[containers]
default_ulimits = []

[engine]
runtime = "runc"
"""


class SystemPackageError(RuntimeError):
    """A package could not be installed; the message says how to install it by hand."""


def missing(packages: Iterable[str]) -> list[str]:
    """The packages of `packages` that dpkg does not report as installed (one dpkg-query for
    all of them; it names the ones it does not know on stderr, which is ignored)."""
    names = list(packages)
    if not names:
        return []
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package}\t${Status}\n", *names],
        capture_output=True,
        text=True,
        check=False,
    )
    installed = {
        line.split("\t", 1)[0]
        for line in result.stdout.splitlines()
        if line.endswith("install ok installed")
    }
    return [name for name in names if name not in installed]


def ensure(packages: Iterable[str]) -> list[str]:
    """Install whatever of `packages` is missing; returns what was installed."""
    todo = missing(packages)
    if not todo:
        return []
    if shutil.which("apt-get") is None:
        raise SystemPackageError(f"missing packages {todo} and no apt-get: install them by hand")
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise SystemPackageError(
                f"missing packages {todo}: run `apt-get install -y {' '.join(todo)}` as root"
            )
        prefix = ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*prefix, "apt-get", "update", "-qq"], check=True, env=env)
    try:
        subprocess.run(
            [*prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *todo],
            check=True,
            env=env,
        )
    except subprocess.CalledProcessError as exc:
        raise SystemPackageError(
            f"apt-get could not install {todo}: see its output above, then retry"
        ) from exc
    return todo


def ensure_areas(*areas: str) -> list[str]:
    """Install the packages of the named areas of PACKAGES."""
    names: list[str] = []
    for area in areas:
        names.extend(PACKAGES[area])
    return ensure(dict.fromkeys(names))


def ensure_podman(conf_path: Path = Path("/etc/containers/containers.conf")) -> None:
    """Install podman and make it usable on this host (runc runtime, no default ulimits)."""
    ensure_areas("podman")
    if os.geteuid() == 0 and (not conf_path.exists() or conf_path.read_text() != CONTAINERS_CONF):
        conf_path.parent.mkdir(parents=True, exist_ok=True)
        conf_path.write_text(CONTAINERS_CONF)
