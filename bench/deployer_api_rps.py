"""Requests/s and latency of GET one service and GET the list, with 1,000 services stored.

The store (SQLite, the embedded default) is seeded directly with 1,000 live services of one
tenant. The API runs as in production (uvicorn, one worker) with the real podman driver on an
empty scope and reconciliation off: get and list read only the store, so no containers are
needed. /healthz (no auth, no store) is measured in the same run as the floor of the stack.

    .venv/bin/python bench/deployer_api_rps.py [--seconds 10] [--concurrency 16] [--baseline DIR]

Listing is paged (100 by default, at most 500): the rows show the first page, a page anywhere
in the list, and the biggest page. `--baseline DIR` also serves the same store from an older
source tree (before paging) and measures its unpaged list in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from stacks.deployer.bootstrap import create_api_key
from stacks.deployer.db import make_engine, session_factory, session_scope
from stacks.deployer.models import Deployment, DeploymentStatus, Service, ServiceStatus

ROOT = Path(__file__).resolve().parents[1]
SERVICES = 1000


def seed(database_url: str, tenant: str) -> None:
    engine = make_engine(database_url)
    with session_scope(session_factory(engine)) as session:
        for i in range(SERVICES):
            spec = {
                "name": f"svc-{i:04d}",
                "image": "localhost/pier-example:1",
                "port": 8080,
                "env": {"GREETING": f"hello {i}"},
                "replicas": 1,
                "cpu": None,
                "memory_mb": None,
                "health_path": "/healthz",
                "routes": [],
            }
            svc = Service(tenant=tenant, name=spec["name"], spec=spec, status=ServiceStatus.LIVE)
            session.add(svc)
            session.flush()
            dep = Deployment(
                service_id=svc.id,
                seq=1,
                spec=spec,
                reason="create",
                status=DeploymentStatus.LIVE,
                url=f"http://127.0.0.1:{20000 + i}",
            )
            session.add(dep)
            session.flush()
            svc.current_deployment_id = dep.id
    engine.dispose()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (from /proc), independent of other load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def measure(
    url: str, key: str, paths: list[str], seconds: float, concurrency: int
) -> tuple[float, float, float, int]:
    """(requests/s, p50 ms, p99 ms, errors) over `seconds` of `concurrency` parallel clients."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as c:

        async def worker(seed_: int) -> None:
            nonlocal errors
            rng = random.Random(seed_)
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                response = await c.get(rng.choice(paths))
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    errors += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return len(latencies) / elapsed, statistics.median(latencies) * 1e3, p99 * 1e3, errors


def start_api(tree: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """The API of source tree `tree` (this checkout, or an older commit's) on a free port."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "stacks.deployer.main:create_app"]
    cmd += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    api = subprocess.Popen(cmd, cwd=tree, env={**env, "PYTHONPATH": str(tree)})
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    return api, url


def row(label: str, api: subprocess.Popen[bytes], rps_args: tuple[str, str, list[str]]) -> None:
    url, key, paths = rps_args
    cpu_before = cpu_seconds(api.pid)
    rps, p50, p99, errors = asyncio.run(measure(url, key, paths, ARGS.seconds, ARGS.concurrency))
    cpu_ms = (cpu_seconds(api.pid) - cpu_before) * 1e3 / (rps * ARGS.seconds)
    print(f"| {label} | {rps:.0f} | {p50:.1f} | {p99:.1f} | {cpu_ms:.1f} | {errors} |", flush=True)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="pier-bench-") as tmp:
        database_url = f"sqlite:///{tmp}/store.db"
        key = create_api_key(database_url, "bench", "bench")
        seed(database_url, "bench")
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "PIER_RUNTIME_SCOPE": f"bench{os.getpid()}",
            "PIER_RUNTIME_DIR": f"{tmp}/runtime",
            "PIER_RECONCILE_ON_START": "false",
        }
        auth = {"Authorization": f"Bearer {key}"}
        api, url = start_api(ROOT, env)
        try:
            first = httpx.get(f"{url}/v1/services", headers=auth).json()
            assert len(first["services"]) == 100 and first["next_cursor"] == "svc-0099"
            biggest = httpx.get(f"{url}/v1/services?limit=500", headers=auth)
            names = [f"/v1/services/svc-{i:04d}" for i in range(SERVICES)]
            # Pages of 100 starting anywhere in the list: keyset paging costs the same deep in.
            pages = [f"/v1/services?cursor=svc-{i:04d}" for i in range(0, SERVICES - 100, 7)]
            print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
            print(f"load average at start: {os.getloadavg()[0]:.1f}")
            print(f"{SERVICES} services, SQLite, 1 uvicorn worker, {ARGS.concurrency} clients")
            print(f"page of 500: {len(biggest.content) / 1024:.0f} KiB")
            print("| request | req/s | p50 ms | p99 ms | API CPU ms/request | errors |")
            print("|---|---|---|---|---|---|")
            row("GET /healthz (floor)", api, (url, key, ["/healthz"]))
            row("GET /v1/services/{name}", api, (url, key, names))
            row("GET /v1/services (first page, 100)", api, (url, key, ["/v1/services"]))
            row("GET /v1/services?cursor=... (any page, 100)", api, (url, key, pages))
            row("GET /v1/services?limit=500", api, (url, key, ["/v1/services?limit=500"]))
        finally:
            api.terminate()
            api.wait(timeout=10)
        if ARGS.baseline is not None:
            # The same store served by the older tree, measured in this same run.
            old, old_url = start_api(ARGS.baseline.resolve(), env)
            try:
                listing = httpx.get(f"{old_url}/v1/services", headers=auth)
                size = len(listing.content) / 1024
                label = f"before: GET /v1/services (all {SERVICES}, {size:.0f} KiB, unpaged)"
                row(label, old, (old_url, key, ["/v1/services"]))
            finally:
                old.terminate()
                old.wait(timeout=10)


_parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
_parser.add_argument("--seconds", type=float, default=10.0)
_parser.add_argument("--concurrency", type=int, default=16)
_parser.add_argument(
    "--baseline",
    type=Path,
    default=None,
    help="also measure the unpaged list of an older source tree "
    "(e.g. `git archive 9b150ac stacks | tar -x -C /tmp/old`) on the same store",
)
ARGS = _parser.parse_args() if __name__ == "__main__" else _parser.parse_args([])


if __name__ == "__main__":
    main()
