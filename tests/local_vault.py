"""A local HTTP server speaking the parts of Vault's API pier uses: KV v2 reads and AppRole login.

No Vault binary exists on these machines, so hvac-based code (the infra stack's provider tokens,
Ansible's `pier_vault_kv` lookup) is tested against this; gated tests run against a real Vault.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class LocalVault:
    token: str
    # "<mount>/<path>" -> the secret's key/value data
    secrets: dict[str, dict[str, str]]
    approle: tuple[str, str] | None = None
    url: str = ""
    # (request path, X-Vault-Token) of every read, so tests can see what was asked for
    reads: list[tuple[str, str | None]] = field(default_factory=list)


def _handler(vault: LocalVault) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            return

        def _reply(self, code: int, body: Mapping[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            if (
                vault.approle is not None
                and self.path == "/v1/auth/approle/login"
                and (body.get("role_id"), body.get("secret_id")) == vault.approle
            ):
                self._reply(200, {"auth": {"client_token": vault.token, "policies": ["pier"]}})
            else:
                self._reply(400, {"errors": ["invalid role or secret ID"]})

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            path = self.path.split("?")[0]
            vault.reads.append((path, self.headers.get("X-Vault-Token")))
            if self.headers.get("X-Vault-Token") != vault.token:
                return self._reply(403, {"errors": ["permission denied"]})
            # KV v2: GET /v1/<mount>/data/<path>
            parts = path.removeprefix("/v1/").split("/", 2)
            key = f"{parts[0]}/{parts[2]}" if len(parts) == 3 and parts[1] == "data" else ""
            if key not in vault.secrets:
                return self._reply(404, {"errors": []})
            meta = {"version": 1, "deletion_time": "", "destroyed": False}
            return self._reply(200, {"data": {"data": vault.secrets[key], "metadata": meta}})

    return Handler


@contextmanager
def local_vault(
    secrets: Mapping[str, Mapping[str, str]],
    *,
    token: str,
    approle: tuple[str, str] | None = None,
) -> Iterator[LocalVault]:
    """Serve `secrets` on a free 127.0.0.1 port for the duration of the block."""
    vault = LocalVault(
        token=token, secrets={k: dict(v) for k, v in secrets.items()}, approle=approle
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(vault))
    vault.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield vault
    finally:
        server.shutdown()
        server.server_close()
