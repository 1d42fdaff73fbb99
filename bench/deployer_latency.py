"""Create-to-live latency of the deployment API against the floor of plain `podman run`.

Three ways to get the example image serving, measured side by side in one run, interleaved
round by round so machine noise hits all three alike:

- floor:  `podman run -d` of the image + poll until the first 200 (what any tool must pay);
- driver: `PodmanDriver.deploy()` (port, labels, limits, health check, proxy switch);
- api:    `POST /v1/services` through the real API process (store, auth, driver), until the
          returned service URL answers 200.

Run: `.venv/bin/python bench/deployer_latency.py [--rounds 15]`. Target: api median <= 1.5x floor.
"""

from __future__ import annotations

import argparse
import http.client
import platform
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from stacks.deployer import local_up
from stacks.deployer.client import PierClient
from stacks.deployer.runtime import ports
from stacks.deployer.runtime.base import DesiredDeployment
from stacks.deployer.runtime.images import EXAMPLE_HEALTH_PATH, build_example_image
from stacks.deployer.runtime.podman import LABEL_SCOPE, PODMAN_BASE, PodmanDriver


def first_200(port: int, path: str = "/", timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.005)
    raise TimeoutError(f"port {port} never answered 200")


def floor_once(image: str, tag: str) -> float:
    port = ports.allocate()
    name = f"bench-floor-{tag}"
    started = time.monotonic()
    subprocess.run(
        [*PODMAN_BASE, "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:{port}"]
        + ["-e", f"PORT={port}", image],
        check=True,
        capture_output=True,
    )
    first_200(port)
    elapsed = time.monotonic() - started
    subprocess.run([*PODMAN_BASE, "rm", "-f", "-t", "0", name], check=True, capture_output=True)
    return elapsed


def driver_once(driver: PodmanDriver, image: str, tag: str) -> float:
    desired = DesiredDeployment(
        tenant="bench",
        service_id=f"svc-{tag}",
        service_name="bench",
        deployment_id=f"dep-{tag}",
        image=image,
        port=8080,
        health_path=EXAMPLE_HEALTH_PATH,
    )
    started = time.monotonic()
    outcome = driver.deploy(desired, health_timeout=30)
    elapsed = time.monotonic() - started
    assert outcome.healthy, outcome.error
    driver.remove(desired.deployment_id)
    return elapsed


def api_once(client: PierClient, image: str, tag: str) -> float:
    name = f"bench-{tag}"
    started = time.monotonic()
    service = client.create({"name": name, "image": image, "health_path": EXAMPLE_HEALTH_PATH})
    assert service["status"] == "live", service
    first_200(int(str(service["url"]).rsplit(":", 1)[1]))
    elapsed = time.monotonic() - started
    client.delete(name)
    return elapsed


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return statistics.median(ordered), p90


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    image = build_example_image(f"localhost/pier-bench:{run}")
    with tempfile.TemporaryDirectory(prefix="pier-bench-") as tmp:
        state = local_up.LocalState(Path(tmp) / "local", scope=f"bench{run}")
        state.root.mkdir(parents=True)
        driver = PodmanDriver(Path(tmp) / "driver", scope=f"benchd{run}")
        try:
            api_url, _ = local_up.ensure_api(state, ports.allocate())
            key = local_up.ensure_api_key(state, api_url)
            results: dict[str, list[float]] = {"floor": [], "driver": [], "api": []}
            with PierClient(api_url, key) as client:
                # One warm-up of each, not counted: first podman run pays image/layer caching.
                floor_once(image, f"{run}-w")
                driver_once(driver, image, f"{run}-w")
                api_once(client, image, f"{run}-w")
                for i in range(args.rounds):
                    results["floor"].append(floor_once(image, f"{run}-{i}"))
                    results["driver"].append(driver_once(driver, image, f"{run}-{i}"))
                    results["api"].append(api_once(client, image, f"{run}-{i}"))
        finally:
            local_up.stop_api(state)
            for scope in (state.scope, driver.scope):
                ids = subprocess.run(
                    [*PODMAN_BASE, "ps", "-aq", "--filter", f"label={LABEL_SCOPE}={scope}"],
                    capture_output=True,
                    text=True,
                ).stdout.split()
                if ids:
                    subprocess.run([*PODMAN_BASE, "rm", "-f", "-t", "0", *ids], capture_output=True)
            driver.shutdown_proxy()
            PodmanDriver(state.runtime_dir, scope=state.scope).shutdown_proxy()
            subprocess.run([*PODMAN_BASE, "rmi", "-f", image], capture_output=True)

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    podman = subprocess.run([*PODMAN_BASE, "--version"], capture_output=True, text=True).stdout
    print(f"machine: {cpu}, {len(list(Path('/sys/devices/system/cpu').glob('cpu[0-9]*')))} cpus")
    print(f"{podman.strip()}, runc, {platform.platform()}; {args.rounds} rounds, interleaved")
    floor_median, _ = summary(results["floor"])
    print("| path | median s | p90 s | median / floor |")
    print("|---|---|---|---|")
    for label, samples in results.items():
        median, p90 = summary(samples)
        print(f"| {label} | {median:.3f} | {p90:.3f} | {median / floor_median:.2f}x |")


if __name__ == "__main__":
    main()
