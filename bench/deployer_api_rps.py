"""Requests/s and latency of GET one service and GET the list, with 1,000 services stored.

The store (SQLite, the embedded default) is seeded directly with 1,000 live services of one
tenant. The API runs as in production (uvicorn, one worker) with the real podman driver on an
empty scope and reconciliation off: get and list read only the store, so no containers are
needed. /healthz (no auth, no store) is measured in the same run as the floor of the stack.

    .venv/bin/python bench/deployer_api_rps.py [--seconds 10] [--concurrency 16]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pier-bench-") as tmp:
        database_url = f"sqlite:///{tmp}/store.db"
        key = create_api_key(database_url, "bench", "bench")
        seed(database_url, "bench")
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "PIER_RUNTIME_SCOPE": f"bench{os.getpid()}",
            "PIER_RUNTIME_DIR": f"{tmp}/runtime",
            "PIER_RECONCILE_ON_START": "false",
        }
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "stacks.deployer.main:create_app"]
        cmd += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
        api = subprocess.Popen(cmd, cwd=ROOT, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    if httpx.get(f"{url}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            listing = httpx.get(f"{url}/v1/services", headers={"Authorization": f"Bearer {key}"})
            assert len(listing.json()["services"]) == SERVICES
            names = [f"/v1/services/svc-{i:04d}" for i in range(SERVICES)]
            print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
            print(f"load average at start: {os.getloadavg()[0]:.1f}")
            print(f"{SERVICES} services, SQLite, 1 uvicorn worker, {args.concurrency} clients")
            print(f"list response: {len(listing.content) / 1024:.0f} KiB")
            print("| request | req/s | p50 ms | p99 ms | API CPU ms/request | errors |")
            print("|---|---|---|---|---|---|")
            for label, paths in (
                ("GET /healthz (floor)", ["/healthz"]),
                ("GET /v1/services/{name}", names),
                ("GET /v1/services (1,000)", ["/v1/services"]),
            ):
                cpu_before = cpu_seconds(api.pid)
                rps, p50, p99, errors = asyncio.run(
                    measure(url, key, paths, args.seconds, args.concurrency)
                )
                cpu_ms = (cpu_seconds(api.pid) - cpu_before) * 1e3 / (rps * args.seconds)
                print(f"| {label} | {rps:.0f} | {p50:.1f} | {p99:.1f} | {cpu_ms:.1f} | {errors} |")
        finally:
            api.terminate()
            api.wait(timeout=10)


if __name__ == "__main__":
    main()
