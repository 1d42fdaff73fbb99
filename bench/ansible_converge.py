"""Converge timings of site.yml on real test hosts (systemd in podman, see tests/testhosts.py).

Measures, in one run on this machine:
  1. a fresh converge of one run node (Robot kind, so the vSwitch role runs too),
  2. the idempotent re-run of that host (target: < 20 s and changed=0),
  3. a fresh converge of 4 such hosts at once (target: < 1.5x the single host).
ANSIBLE_STRATEGY=linear measures plain Ansible (no Mitogen) for comparison.
Next to wall time it reports the CPU time spent (ansible-playbook and its workers, plus the test
hosts' containers): on a small shared machine, converging N hosts at once is bounded by CPU.
Prints a markdown section for docs/benchmarks.md.

    .venv/bin/python bench/ansible_converge.py
"""

from __future__ import annotations

import os
import platform
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.ansible import harness  # noqa: E402 - needs the repo root on sys.path first

NODE_GROUPS = ["run", "robot"]


@dataclass
class Measured:
    run: harness.PlaybookRun
    cpu: float
    load: float


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(lab: harness.Lab, *args: str, quiet_ok: bool = False) -> Measured:
    hosts_before = sum(harness.container_cpu_seconds(h) for h in lab.nodes)
    ctl_before = _children_cpu()
    run = lab.playbook("site.yml", *args, quiet_ok=quiet_ok)
    cpu = _children_cpu() - ctl_before
    cpu += sum(harness.container_cpu_seconds(h) for h in lab.nodes) - hosts_before
    if run.rc != 0:
        raise SystemExit(f"converge of {len(lab.nodes)} host(s) failed:\n{run.output[-4000:]}")
    return Measured(run, cpu, os.getloadavg()[0])


def converge(hosts: int) -> tuple[Measured, Measured | None]:
    with harness.lab([NODE_GROUPS] * hosts, tag="bench") as lab:
        fresh = measure(lab)
        rerun = measure(lab, quiet_ok=True) if hosts == 1 else None
        return fresh, rerun


def row(label: str, m: Measured, target: str = "") -> str:
    return (
        f"| {label} | {m.run.seconds:.1f} | {m.cpu:.1f} | {m.load:.1f} | {m.run.changed()} "
        f"| {target} |"
    )


def main() -> None:
    one, rerun = converge(1)
    assert rerun is not None
    four, _ = converge(4)
    ratio = four.run.seconds / one.run.seconds
    rerun_ok = rerun.run.seconds < 20 and rerun.run.changed() == 0
    print("## Ansible converge (bench/ansible_converge.py)")
    print()
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, shared with other jobs (load average column: 1-minute load "
        f"after the run). Hosts: systemd-in-podman test hosts ({', '.join(NODE_GROUPS)} groups, "
        "packages preinstalled in the image), site.yml over SSH, strategy "
        f"{os.environ.get('ANSIBLE_STRATEGY', 'mitogen_linear (ansible.cfg)')}. CPU = "
        "ansible-playbook and its workers + the hosts' containers."
    )
    print()
    print("| measurement | wall s | CPU s | load | changed | target |")
    print("|---|---|---|---|---|---|")
    print(row("fresh converge, 1 host", one))
    print(
        row(
            "idempotent re-run, 1 host",
            rerun,
            f"< 20 s, changed=0: {'met' if rerun_ok else 'MISSED'}",
        )
    )
    print(
        row(
            "fresh converge, 4 hosts at once",
            four,
            f"< 1.5x one host: {ratio:.2f}x, {'met' if ratio < 1.5 else 'MISSED'}",
        )
    )


if __name__ == "__main__":
    main()
