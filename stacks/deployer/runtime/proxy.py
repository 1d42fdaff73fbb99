"""The service proxy: one stable local URL per service, switched atomically between deployments.

Each deployment publishes its own host port, so without this a redeploy would change the
service's URL. One small proxy process per runtime state directory listens on a stable
127.0.0.1 port per service and forwards each request (one per connection) to the deployment that
is live; the driver switches it only once the new deployment is healthy, and stops the old one
only after its proxied connections have drained. It runs detached from the API, so services keep
answering while the API restarts; its routes persist in `routes.json`, and it exits when its
state directory disappears or nothing it routes to has answered for a while (the driver starts
it again on demand).

Run as `python -m stacks.deployer.runtime.proxy STATE_DIR [IDLE_EXIT_SECONDS]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SOCKET_NAME = "proxy.sock"
ROUTES_NAME = "routes.json"
LOCK_NAME = "proxy.lock"
LOG_NAME = "proxy.log"
PID_NAME = "proxy.pid"
_CHUNK = 65536
# With no reachable backend and no open connection for this long, the proxy exits: routes stay on
# disk and the driver starts it again on its next call, so nothing lingers after a test run or a
# `down`.
DEFAULT_IDLE_EXIT = 30.0
# Each check opens one bare TCP connection to a backend; rarely, so apps' logs stay quiet.
_IDLE_CHECK_EVERY = 10.0
# A connection that cannot reach its backend within this is answered with a 502.
_CONNECT_TIMEOUT = 2.0
# How often a driver waiting for a proxy to come up starts another (the lock keeps one).
_RESPAWN_EVERY = 1.0
# A client that opens a connection but sends no complete request head within this is dropped.
_HEAD_TIMEOUT = 30.0
_BAD_GATEWAY = (
    b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 27\r\n"
    b"Connection: close\r\n\r\nno live deployment to serve"
)


class ProxyError(RuntimeError):
    """The proxy could not be reached or refused a change; the message says why."""


@dataclass
class Route:
    port: int
    deployment_id: str | None
    backends: list[int] = field(default_factory=list)


class _Proxy:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.routes: dict[str, Route] = {}
        self.servers: dict[str, asyncio.Server] = {}
        self.active: dict[int, int] = {}
        self.rr = itertools.count()
        # When a route last changed: a freshly switched route keeps the proxy alive.
        self.touched = time.monotonic()

    def load(self) -> None:
        path = self.state_dir / ROUTES_NAME
        if path.exists():
            raw = json.loads(path.read_text())
            self.routes = {sid: Route(**r) for sid, r in raw.items()}

    def save(self) -> None:
        path = self.state_dir / ROUTES_NAME
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({sid: asdict(r) for sid, r in self.routes.items()}))
        tmp.replace(path)

    async def listen(self, service_id: str) -> None:
        route = self.routes[service_id]

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self.forward(service_id, reader, writer)

        self.servers[service_id] = await asyncio.start_server(
            handle, "127.0.0.1", route.port, reuse_address=True
        )

    async def forward(
        self, service_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # The backend is chosen once the request has arrived, not at connect time, and each
        # connection carries one request (see one_request), so no client stays pinned to a
        # deployment the driver is about to stop.
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HEAD_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            writer.close()
            return
        route = self.routes.get(service_id)
        backends = list(route.backends) if route else []
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        chosen = 0
        if backends:
            start = next(self.rr)
            # Try every backend once, starting round-robin, so one dead replica does not fail
            # the request.
            for i in range(len(backends)):
                chosen = backends[(start + i) % len(backends)]
                try:
                    upstream = await asyncio.wait_for(
                        asyncio.open_connection("127.0.0.1", chosen), _CONNECT_TIMEOUT
                    )
                    break
                except (OSError, TimeoutError):
                    continue
        if upstream is None:
            with contextlib.suppress(OSError):
                writer.write(_BAD_GATEWAY)
                await writer.drain()
            writer.close()
            return
        up_reader, up_writer = upstream
        self.active[chosen] = self.active.get(chosen, 0) + 1
        try:
            up_writer.write(one_request(head))
            await asyncio.gather(_pipe(reader, up_writer), _pipe_response(up_reader, writer))
        finally:
            self.active[chosen] -= 1
            if not self.active[chosen]:
                del self.active[chosen]
            for w in (writer, up_writer):
                w.close()

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            reply = await self.apply(json.loads(line))
        except Exception as exc:  # noqa: BLE001 - any bad request is reported, never fatal
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        writer.write(json.dumps(reply).encode() + b"\n")
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()

    async def apply(self, msg: dict[str, Any]) -> dict[str, Any]:
        op = msg["op"]
        if op in ("set", "drop"):
            self.touched = time.monotonic()
        if op == "set":
            service_id = msg["service_id"]
            new = Route(int(msg["port"]), msg.get("deployment_id"), list(msg["backends"]))
            old = self.routes.get(service_id)
            if old is None or old.port != new.port:
                if old is not None:
                    await self.close_server(service_id)
                self.routes[service_id] = new
                try:
                    await self.listen(service_id)
                except OSError as exc:
                    del self.routes[service_id]
                    return {"ok": False, "error": f"cannot listen on {new.port}: {exc}"}
            self.routes[service_id] = new
            self.save()
        elif op == "drop":
            if msg["service_id"] in self.routes:
                await self.close_server(msg["service_id"])
                del self.routes[msg["service_id"]]
                self.save()
        elif op == "shutdown":
            asyncio.get_running_loop().call_soon(_stop)
        elif op != "get":
            return {"ok": False, "error": f"unknown op {op!r}"}
        return {
            "ok": True,
            "routes": {sid: asdict(r) for sid, r in self.routes.items()},
            "active": {str(p): n for p, n in self.active.items()},
        }

    async def close_server(self, service_id: str) -> None:
        server = self.servers.pop(service_id, None)
        if server is not None:
            server.close()


def one_request(head: bytes) -> bytes:
    """The request (or response) head with `Connection: close`: the connection ends with it.

    Keep-alive between client and proxy is given up for this (a new loopback connection per
    request costs well under a millisecond); upgrades (WebSocket) pass through untouched.
    """
    lines = head[: -len(b"\r\n\r\n")].split(b"\r\n")
    hop = (b"connection", b"keep-alive", b"proxy-connection")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"connection" and b"upgrade" in value.lower():
            return head
    kept = [lines[0]] + [ln for ln in lines[1:] if ln.partition(b":")[0].strip().lower() not in hop]
    return b"\r\n".join([*kept, b"Connection: close", b"", b""])


async def _pipe_response(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # The response says `Connection: close` too, or a keep-alive client would send its next
    # request on a connection the backend has already closed.
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        head = exc.partial
    except (asyncio.LimitOverrunError, OSError):
        head = b""
    else:
        head = one_request(head)
    try:
        writer.write(head)
        await writer.drain()
    except OSError:
        writer.close()
        return
    await _pipe(reader, writer)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()


_stop_event: asyncio.Event | None = None


def _stop() -> None:
    if _stop_event is not None:
        _stop_event.set()


async def _reachable(proxy: _Proxy) -> bool:
    for route in list(proxy.routes.values()):
        for port in route.backends:
            try:
                _reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port), 0.5
                )
            except (OSError, TimeoutError):
                continue
            writer.close()
            return True
    return False


async def _serve(state_dir: Path, idle_exit: float) -> None:
    global _stop_event
    _stop_event = asyncio.Event()
    proxy = _Proxy(state_dir)
    proxy.load()
    for service_id in list(proxy.routes):
        try:
            await proxy.listen(service_id)
        except OSError:
            # Its port was taken while no proxy ran; the driver re-routes it on the next deploy.
            del proxy.routes[service_id]
    proxy.save()
    sock_path = state_dir / SOCKET_NAME
    sock_path.unlink(missing_ok=True)
    control = await asyncio.start_unix_server(proxy.control, path=str(sock_path))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _stop)
    busy_at = next_check = time.monotonic()
    while not _stop_event.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_stop_event.wait(), 0.5)
        if not state_dir.is_dir():
            break
        now = time.monotonic()
        if now >= next_check:
            next_check = now + min(_IDLE_CHECK_EVERY, idle_exit)
            if proxy.active or await _reachable(proxy):
                busy_at = now
            # Measured after the await: a route set meanwhile counts as activity.
            elif time.monotonic() - max(busy_at, proxy.touched) > idle_exit:
                break
    control.close()
    for service_id in list(proxy.servers):
        await proxy.close_server(service_id)
    with contextlib.suppress(OSError):
        sock_path.unlink()


def main(argv: list[str]) -> int:
    state_dir = Path(argv[0]).resolve()
    idle_exit = float(argv[1]) if len(argv) > 1 else DEFAULT_IDLE_EXIT
    lock = (state_dir / LOCK_NAME).open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another proxy already serves this state directory
    (state_dir / PID_NAME).write_text(f"{os.getpid()}\n")
    asyncio.run(_serve(state_dir, idle_exit))
    return 0


# --- the driver's side -------------------------------------------------------------------------


def call(
    state_dir: Path,
    msg: dict[str, Any],
    *,
    spawn: bool = True,
    idle_exit: float = DEFAULT_IDLE_EXIT,
) -> dict[str, Any]:
    """Send one control message to the state directory's proxy, starting it if needed."""
    try:
        return _send(state_dir, msg)
    except (FileNotFoundError, ConnectionRefusedError):
        if not spawn:
            raise ProxyError("the proxy is not running") from None
    _spawn(state_dir, idle_exit)
    deadline = time.monotonic() + 10
    respawn_at = time.monotonic() + _RESPAWN_EVERY
    delay = 0.005
    while True:
        try:
            return _send(state_dir, msg)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            now = time.monotonic()
            if now > deadline:
                log = state_dir / LOG_NAME
                raise ProxyError(f"the service proxy did not start; see {log}") from exc
            if now > respawn_at:
                # The one spawned may have found the lock still held by a proxy that was just
                # exiting (idle) and given up; a new one takes over once that one is gone.
                _spawn(state_dir, idle_exit)
                respawn_at = now + _RESPAWN_EVERY
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def _send(state_dir: Path, msg: dict[str, Any]) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(state_dir / SOCKET_NAME))
        sock.sendall(json.dumps(msg).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    reply: dict[str, Any] = json.loads(data)
    if not reply.get("ok"):
        raise ProxyError(f"the service proxy refused {msg['op']}: {reply.get('error')}")
    return reply


def _spawn(state_dir: Path, idle_exit: float) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / LOG_NAME).open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stacks.deployer.runtime.proxy",
                str(state_dir),
                f"{idle_exit:g}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # survives the API process and its signals
            close_fds=True,
            cwd="/",
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [_package_root(), os.environ.get("PYTHONPATH")])
                ),
            },
        )
    # Reap it when it exits (idle, shutdown) so the API does not collect zombies.
    threading.Thread(target=process.wait, daemon=True).start()


def _package_root() -> str:
    here = Path(__file__).resolve()
    return str(here.parents[3])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
