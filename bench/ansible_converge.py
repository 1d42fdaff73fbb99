"""Converge timings of site.yml on real test hosts (systemd in podman, see tests/testhosts.py).

Measures, in one run on this machine:
  1. a fresh converge of one run node (Robot kind, so the vSwitch role runs too),
  2. the idempotent re-run of that host (target: < 20 s and changed=0),
  3. a fresh converge of 4 such hosts at once (target: < 1.5x the single host).
Prints a markdown section for docs/benchmarks.md.

    .venv/bin/python bench/ansible_converge.py
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.ansible import harness  # noqa: E402 - needs the repo root on sys.path first

NODE_GROUPS = ["run", "robot"]


def converge(hosts: int) -> tuple[harness.PlaybookRun, harness.PlaybookRun | None]:
    with harness.lab([NODE_GROUPS] * hosts, tag="bench") as lab:
        fresh = lab.playbook("site.yml")
        if fresh.rc != 0:
            raise SystemExit(f"converge of {hosts} host(s) failed:\n{fresh.output[-4000:]}")
        rerun = lab.playbook("site.yml", quiet_ok=True) if hosts == 1 else None
        return fresh, rerun


def main() -> None:
    one, rerun = converge(1)
    assert rerun is not None
    four, _ = converge(4)
    ratio = four.seconds / one.seconds
    load = os.getloadavg()[0]
    print("## Ansible converge (bench/ansible_converge.py)")
    print()
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}; load average at the end {load:.1f}. Hosts: systemd-in-podman "
        f"test hosts ({', '.join(NODE_GROUPS)} groups), site.yml over SSH with pipelining."
    )
    print()
    print("| measurement | seconds | changed | target |")
    print("|---|---|---|---|")
    print(f"| fresh converge, 1 host | {one.seconds:.1f} | {one.changed()} | |")
    print(
        f"| idempotent re-run, 1 host | {rerun.seconds:.1f} | {rerun.changed()} | "
        f"< 20 s, changed=0: {'met' if rerun.seconds < 20 and rerun.changed() == 0 else 'MISSED'} |"
    )
    print(
        f"| fresh converge, 4 hosts at once | {four.seconds:.1f} | {four.changed()} | "
        f"< 1.5x one host: {ratio:.2f}x, {'met' if ratio < 1.5 else 'MISSED'} |"
    )


if __name__ == "__main__":
    main()
