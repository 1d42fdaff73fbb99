"""Waiting for a new node: its SSH server, then its Kubernetes Ready condition."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence

BANNER_PREFIX = b"SSH-"


class ProbeTimeout(TimeoutError):
    """A wait ran out of time; the message says what was last seen."""


def ssh_banner(host: str, port: int = 22, timeout: float = 5.0) -> str:
    """Connect and read the server's identification line (RFC 4253 4.2)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        data = b""
        while b"\n" not in data and len(data) < 512:
            chunk = sock.recv(256)
            if not chunk:
                break
            data += chunk
    line = data.split(b"\n", 1)[0].strip()
    if not line.startswith(BANNER_PREFIX):
        raise ConnectionError(f"{host}:{port} answered, but not with an SSH banner: {line[:60]!r}")
    return line.decode("ascii", "replace")


def wait_for_ssh(
    host: str,
    port: int = 22,
    timeout: float = 300.0,
    interval: float = 1.0,
    on_attempt: Callable[[str], None] | None = None,
) -> str:
    """Poll until `host:port` speaks SSH; returns its banner.

    A fresh server accepts TCP before sshd is up (or refuses, or drops packets while cloud-init
    runs), so only a banner counts as ready.
    """
    deadline = time.monotonic() + timeout
    last = "no attempt yet"
    while True:
        remaining = deadline - time.monotonic()
        try:
            return ssh_banner(host, port, timeout=max(0.2, min(5.0, remaining)))
        except OSError as exc:
            last = str(exc) or type(exc).__name__
        if on_attempt is not None:
            on_attempt(last)
        if time.monotonic() + interval > deadline:
            raise ProbeTimeout(
                f"no SSH banner from {host}:{port} within {timeout:g}s (last: {last})"
            )
        time.sleep(interval)


def node_ready(node: Mapping[str, object]) -> bool | None:
    """The node's Ready condition: True, False, or None when it reports none yet."""
    status = node.get("status")
    conditions = status.get("conditions", []) if isinstance(status, Mapping) else []
    for cond in conditions if isinstance(conditions, list) else []:
        if isinstance(cond, Mapping) and cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return None


def wait_for_node_ready(
    name: str,
    kubectl: Sequence[str] = ("kubectl",),
    kubeconfig: str | None = None,
    timeout: float = 600.0,
    interval: float = 5.0,
    on_attempt: Callable[[str], None] | None = None,
) -> None:
    """Poll `kubectl get node NAME -o json` until its Ready condition is True."""
    env = dict(os.environ)
    if kubeconfig:
        env["KUBECONFIG"] = kubeconfig
    deadline = time.monotonic() + timeout
    last = "no attempt yet"
    while True:
        try:
            result = subprocess.run(
                [*kubectl, "get", "node", name, "-o", "json"],
                capture_output=True,
                text=True,
                env=env,
                timeout=max(5.0, min(30.0, deadline - time.monotonic())),
                check=False,
            )
        except FileNotFoundError as exc:
            raise ProbeTimeout(f"cannot run {kubectl[0]!r}: {exc.strerror}") from exc
        except subprocess.TimeoutExpired:
            last = "kubectl timed out"
        else:
            if result.returncode != 0:
                last = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
            else:
                try:
                    ready = node_ready(json.loads(result.stdout))
                except (json.JSONDecodeError, AttributeError):
                    ready, last = None, "kubectl printed something that is not a node object"
                else:
                    if ready:
                        return
                    last = "Ready=False" if ready is False else "no Ready condition yet"
        if on_attempt is not None:
            on_attempt(last)
        if time.monotonic() + interval > deadline:
            raise ProbeTimeout(f"node {name} not Ready within {timeout:g}s (last: {last})")
        time.sleep(interval)
