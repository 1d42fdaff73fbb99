"""Client threads that GET one URL in a loop while a test switches what serves it."""

from __future__ import annotations

import threading
from types import TracebackType

import httpx


class UrlLoad:
    """`clients` threads, each with its own keep-alive connection, GET `url` until the `with`
    block ends. `answers[i]` is what client i got, in order (bodies, stripped); `failures` holds
    every non-200 answer and transport error. Per-client lists, because across clients answers
    may legitimately interleave."""

    def __init__(self, url: str, clients: int = 1) -> None:
        self.url = url
        self.answers: list[list[str]] = [[] for _ in range(clients)]
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(a,)) for a in self.answers]

    def _run(self, mine: list[str]) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                try:
                    response = client.get(self.url)
                    if response.status_code != 200:
                        self.failures.append(f"{response.status_code}: {response.text}")
                    mine.append(response.text.strip())
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))

    def __enter__(self) -> UrlLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
