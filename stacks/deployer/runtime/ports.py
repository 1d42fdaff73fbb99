"""Host port allocation for published containers and service proxies."""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterable

PORT_MIN = 10000
PORT_MAX = 60000

_lock = threading.Lock()
# Ports handed out recently by this process: the container that will bind one may not have
# started yet, so a bind test alone would hand the same port to two concurrent deploys.
_recent: list[int] = []
_RECENT_KEEP = 256


class NoFreePort(RuntimeError):
    """No free port was found in the allowed range."""


def is_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:`port` (and it is not in TIME_WAIT use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def allocate(exclude: Iterable[int] = (), *, attempts: int = 200) -> int:
    """A free port in [PORT_MIN, PORT_MAX], random so concurrent allocators rarely collide."""
    taken = set(exclude)
    with _lock:
        for _ in range(attempts):
            port = random.randint(PORT_MIN, PORT_MAX)
            if port in taken or port in _recent or not is_free(port):
                continue
            _recent.append(port)
            del _recent[:-_RECENT_KEEP]
            return port
    raise NoFreePort(f"no free port in {PORT_MIN}-{PORT_MAX} after {attempts} tries")
