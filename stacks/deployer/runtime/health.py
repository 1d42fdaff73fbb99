"""HTTP health checks with a short backoff, so a deploy goes live as soon as it answers."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

FIRST_DELAY = 0.02
MAX_DELAY = 0.25


def wait_healthy(
    url: str,
    *,
    timeout: float,
    still_running: Callable[[], bool] | None = None,
    check_every: float = 0.5,
) -> tuple[bool, str]:
    """Poll `url` until it answers 2xx; returns (healthy, last problem seen).

    `still_running` is asked now and then so a container that exited fails at once instead of
    after the whole timeout.
    """
    deadline = time.monotonic() + timeout
    delay = FIRST_DELAY
    problem = "no answer yet"
    next_check = time.monotonic() + check_every
    # No connection reuse: each probe must reach the (re)starting server afresh.
    with httpx.Client(
        timeout=min(1.0, timeout), limits=httpx.Limits(max_keepalive_connections=0)
    ) as client:
        while True:
            try:
                response = client.get(url)
                if 200 <= response.status_code < 300:
                    return True, ""
                problem = f"GET {url} answered {response.status_code}"
            except httpx.HTTPError as exc:
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
