"""HTTP health checks with a short backoff, so a deploy goes live as soon as it answers."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable

FIRST_DELAY = 0.02
MAX_DELAY = 0.25


def probe(port: int, path: str, *, timeout: float = 1.0) -> int:
    """GET http://127.0.0.1:`port``path` once; the status code (raises OSError if unreachable).

    http.client rather than httpx: a probe runs every few milliseconds during a deploy, and
    httpx would log each one at INFO into the API's log.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def wait_healthy(
    port: int,
    path: str,
    *,
    timeout: float,
    still_running: Callable[[], bool] | None = None,
    check_every: float = 0.5,
) -> tuple[bool, str]:
    """Poll 127.0.0.1:`port``path` until it answers 2xx; returns (healthy, last problem seen).

    `still_running` is asked now and then so a container that exited fails at once instead of
    after the whole timeout.
    """
    url = f"http://127.0.0.1:{port}{path}"
    deadline = time.monotonic() + timeout
    delay = FIRST_DELAY
    problem = "no answer yet"
    next_check = time.monotonic() + check_every
    while True:
        try:
            status = probe(port, path, timeout=min(1.0, max(0.05, timeout)))
            if 200 <= status < 300:
                return True, ""
            problem = f"GET {url} answered {status}"
        except (OSError, http.client.HTTPException) as exc:
            problem = f"GET {url} failed: {type(exc).__name__}"
        now = time.monotonic()
        if still_running is not None and now >= next_check:
            next_check = now + check_every
            if not still_running():
                return False, f"the container exited before {url} answered ({problem})"
        if now + delay > deadline:
            return False, f"no healthy answer in time: {problem}"
        time.sleep(delay)
        delay = min(delay * 1.5, MAX_DELAY)
