"""How long the infra program takes to evaluate under Pulumi mocks for 3, 30 and 300 run nodes.

Target (issue 2): 300 run nodes in under 10 s, cost growing no faster than linearly. Run:

    .venv/bin/python bench/infra_plan_scaling.py [--repeat N]

Prints a Markdown table (for docs/benchmarks.md) with the machine it ran on.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time

from stacks.infra import config
from stacks.infra.dryrun import dry_run

SIZES = (3, 30, 300)
TARGET_300_S = 10.0


def evaluate(run_nodes: int, repeat: int) -> tuple[float, float, int]:
    """Median wall and CPU time of `repeat` dry runs of staging with `run_nodes` run nodes."""
    raw = config.read_file(config.stack_file("staging"))
    raw = copy.deepcopy(raw)
    raw["pools"]["run"]["count"] = run_nodes
    raw["pools"]["run"].pop("names", None)
    cfg = config.validate(raw)
    walls, cpus = [], []
    resources = 0
    for _ in range(repeat):
        start, cpu_start = time.perf_counter(), time.process_time()
        result = dry_run(cfg)
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu_start)
        resources = len(result.resources)
    return statistics.median(walls), statistics.median(cpus), resources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (median is shown)")
    args = parser.parse_args()
    dry_run(config.load_file(config.stack_file("staging")))  # warm imports and caches
    rows = [(n, *evaluate(n, args.repeat)) for n in SIZES]
    cpu = platform.processor() or platform.machine()
    load = os.getloadavg()[0]
    print(
        f"machine: {platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {load:.1f} at start; "
        f"median of {args.repeat} runs"
    )
    print()
    print("| run nodes | resources | wall (s) | CPU (s) | CPU ms per resource |")
    print("|---:|---:|---:|---:|---:|")
    for n, wall, cpu_s, resources in rows:
        per = 1000 * cpu_s / resources
        print(f"| {n} | {resources} | {wall:.2f} | {cpu_s:.2f} | {per:.1f} |")
    (n_mid, _, c_mid, r_mid), (n_big, w_big, c_big, r_big) = rows[1], rows[2]
    print()
    print(
        f"{n_mid} -> {n_big} run nodes (x{n_big / n_mid:.0f}): CPU x{c_big / c_mid:.1f}, "
        f"resources x{r_big / r_mid:.1f}"
    )
    verdict = "meets" if w_big < TARGET_300_S else "MISSES"
    print(f"{n_big} run nodes: {w_big:.2f} s wall, {verdict} the {TARGET_300_S:.0f} s target")


if __name__ == "__main__":
    main()
