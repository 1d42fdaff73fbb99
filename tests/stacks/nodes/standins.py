"""Stand-ins for the CLIs this machine lacks (pulumi, kubectl), used by the add-run-node tests.

They are real programs or callables with the same contract as the real ones: the Pulumi
stand-in derives its outputs from the stack config on disk (as the infra program does), the
kubectl stand-in is an executable that answers `get node NAME -o json`.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stacks.infra.outputs import INVENTORY, LB_ORIGINS
from tests.stacks.nodes.sample import document

KUBECTL = """\
#!{python}
import json, os, sys
state = {state!r}
calls = int(open(state).read()) if os.path.exists(state) else 0
open(state, "w").write(str(calls + 1))
if not os.environ.get("KUBECONFIG"):
    sys.exit("error: no KUBECONFIG")
if sys.argv[1:4] != ["get", "node", sys.argv[3]] or sys.argv[4:] != ["-o", "json"]:
    sys.exit(f"unexpected arguments {{sys.argv[1:]}}")
if sys.argv[3] not in {known!r}:
    sys.exit(f'Error from server (NotFound): nodes "{{sys.argv[3]}}" not found')
ready = "True" if calls + 1 >= {ready_after} else "False"
print(json.dumps({{"kind": "Node", "metadata": {{"name": sys.argv[3]}},
    "status": {{"conditions": [{{"type": "MemoryPressure", "status": "False"}},
                              {{"type": "Ready", "status": ready}}]}}}}))
"""

ANSIBLE = """\
#!{python}
import json, os, sys
with open({record!r}, "a") as fh:
    fh.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd()}}) + "\\n")
print("PLAY RECAP ****")
print(f"{{sys.argv[sys.argv.index('--limit') + 1]}} : ok=3 changed=1 unreachable=0 failed=0")
sys.exit({code})
"""


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def kubectl(tmp: Path, known: list[str], ready_after: int = 1) -> list[str]:
    """An executable kubectl stand-in: Ready from its `ready_after`-th call on."""
    state = tmp / "kubectl.calls"
    text = KUBECTL.format(
        python=sys.executable, state=str(state), known=known, ready_after=ready_after
    )
    return [str(_script(tmp / "kubectl", text))]


def ansible(tmp: Path, code: int = 0) -> tuple[list[str], Path]:
    record = tmp / "ansible.calls"
    text = ANSIBLE.format(python=sys.executable, record=str(record), code=code)
    return [str(_script(tmp / f"ansible-playbook-{code}", text))], record


@dataclass
class FakePulumi:
    """`pulumi up`/`stack output` for the infra stack, computed from the config on disk.

    `overrides` point hosts at real addresses (`doc_overrides` the network at a test lab's);
    `drop_origin` leaves a host out of the LB, `omit_host` out of the inventory.
    """

    env: str
    stacks_dir: Path
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Top-level document fields to replace (network, k3s_api_endpoint, registry).
    doc_overrides: dict[str, Any] = field(default_factory=dict)
    drop_origin: str | None = None
    fail_with: str | None = None
    omit_host: str | None = None
    calls: list[str] = field(default_factory=list)

    def outputs(self, env: str) -> dict[str, Any]:
        self.calls.append("outputs")
        return self._outputs(env)

    def _outputs(self, env: str) -> dict[str, Any]:
        assert env == self.env
        doc = document(env, self.stacks_dir, self.overrides) | self.doc_overrides
        doc["hosts"] = [h for h in doc["hosts"] if h["name"] != self.omit_host]
        origins = sorted(
            h["public_ipv4"]
            for h in doc["hosts"]
            if h["pool"] == "run" and h["name"] != self.drop_origin
        )
        return {INVENTORY: doc, LB_ORIGINS: origins}

    def up(self, env: str, on_output: Callable[[str], None] | None = None) -> dict[str, Any]:
        self.calls.append("up")
        if self.fail_with:
            raise RuntimeError(self.fail_with)
        if on_output is not None:
            on_output("Updating (staging):")
            on_output("    + hcloud:index:Server  created")
        return self._outputs(env)


@contextmanager
def ssh_banner_server(banner: bytes = b"SSH-2.0-OpenSSH_9.2p1 standin\r\n") -> Iterator[int]:
    """A TCP server on 127.0.0.1 that greets like sshd; yields its port."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(banner)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
