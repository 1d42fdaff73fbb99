"""The service proxy with keep-alive HTTP/1.1 backends (the busybox image always closes)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from stacks.deployer.runtime import ports, proxy
from tests.stacks.deployer.url_load import UrlLoad


def backend(body: bytes) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive unless the request says close

        def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    try:
        proxy.call(tmp_path, {"op": "shutdown"}, spawn=False)
    except proxy.ProxyError:
        pass


def test_keep_alive_clients_follow_a_switch_and_the_old_backend_drains_at_once(
    state_dir: Path,
) -> None:
    old, new = backend(b"old"), backend(b"new")
    old_port, new_port = old.server_address[1], new.server_address[1]
    port = ports.allocate()
    proxy.call(
        state_dir,
        {
            "op": "set",
            "service_id": "s",
            "port": port,
            "deployment_id": "d1",
            "backends": [old_port],
        },
    )
    # One keep-alive client: without the proxy's one-request-per-connection rule it would stay on
    # the old backend and fail once that is shut down.
    try:
        with UrlLoad(f"http://127.0.0.1:{port}/") as load:
            time.sleep(0.3)
            proxy.call(
                state_dir,
                {
                    "op": "set",
                    "service_id": "s",
                    "port": port,
                    "deployment_id": "d2",
                    "backends": [new_port],
                },
            )
            started = time.monotonic()
            while str(old_port) in proxy.call(state_dir, {"op": "get"})["active"]:
                assert time.monotonic() - started < 1, "the old backend never drained"
                time.sleep(0.005)
            old.shutdown()
            old.server_close()
            time.sleep(0.3)
    finally:
        new.shutdown()
        new.server_close()

    [answers] = load.answers
    assert load.failures == []
    assert answers[0] == "old" and answers[-1] == "new"
    assert "old" not in answers[answers.index("new") :]


def test_no_backend_is_a_502_and_bad_control_messages_are_refused(state_dir: Path) -> None:
    port = ports.allocate()
    proxy.call(
        state_dir,
        {"op": "set", "service_id": "s", "port": port, "deployment_id": None, "backends": []},
    )
    response = httpx.get(f"http://127.0.0.1:{port}/")
    assert response.status_code == 502 and response.text == "no live deployment to serve"
    with pytest.raises(proxy.ProxyError, match="unknown op 'bogus'"):
        proxy.call(state_dir, {"op": "bogus"})
    with pytest.raises(proxy.ProxyError, match="KeyError"):
        proxy.call(state_dir, {"op": "set", "service_id": "s"})
    # The routes survive a restart of the proxy.
    proxy.call(state_dir, {"op": "shutdown"})
    time.sleep(0.2)
    assert proxy.call(state_dir, {"op": "get"})["routes"]["s"]["port"] == port


def test_one_request_forces_close_but_leaves_upgrades_alone() -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\n\r\n"
    assert proxy.one_request(head) == b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    upgrade = b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    assert proxy.one_request(upgrade) == upgrade
