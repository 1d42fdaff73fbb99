"""Converge timings of site.yml on real test hosts (systemd in podman, see tests/testhosts.py).

Measures, in one run on this machine, each row REPS times (default 3) alternating 1 and 4 hosts,
reporting the median:
  1. a fresh converge of one run node (Robot kind, so the vSwitch role runs too),
  2. the idempotent re-run of that host (target: < 20 s and changed=0),
  3. a fresh converge of 4 such hosts at once (target: < 1.5x the single host),
  4. Ansible's own floor for the same hosts: no-op playbooks (fact gathering + N `stat` tasks,
     nothing changes) on 1 and 4 hosts, for N = 1, 15 and 45 (site.yml runs about 45 tasks per
     host). On a small machine the test hosts and the controller share the cores, so what a
     4-host converge costs over one host is mostly Ansible's per-task, per-host work; these rows
     show how much of the ratio any playbook of that length has here.
ANSIBLE_STRATEGY=linear measures plain Ansible (no Mitogen) for comparison.
Next to wall time it reports the whole machine's busy CPU time during the run (/proc/stat: the
controller, its SSH and Mitogen processes and the hosts' containers).
Prints a markdown section for docs/benchmarks.md.

    .venv/bin/python bench/ansible_converge.py [REPS]
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.ansible import harness  # noqa: E402 - needs the repo root on sys.path first

NODE_GROUPS = ["run", "robot"]
NOOP_TASKS = (1, 15, 45)


@dataclass
class Measured:
    seconds: float
    cpu: float
    changed: int
    tasks: int  # per host: ok + skipped in the recap of the first host


def _busy_cpu_seconds() -> float:
    """Non-idle CPU time of the whole machine so far (all cores)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def _noop_playbook(workdir: Path, tasks: int) -> Path:
    """N stat tasks that change nothing, next to a link to pier's group_vars (same interpreter,
    same connection settings as site.yml)."""
    (workdir / "group_vars").symlink_to(harness.ANSIBLE_DIR / "group_vars")
    steps = "".join(
        f"    - name: Stat {i}\n      ansible.builtin.stat:\n        path: /etc/hostname\n"
        for i in range(tasks)
    )
    path = workdir / "noop.yml"
    path.write_text(
        '---\n- name: No-op\n  hosts: all\n  gather_subset: ["!all", "!min", network, virtual]\n'
        f"  tasks:\n{steps}"
    )
    return path


def _measure(lab: harness.Lab, playbook: Path, *args: str, quiet_ok: bool = False) -> Measured:
    cpu_before = _busy_cpu_seconds()
    start = time.monotonic()
    run = harness.run_playbook(
        playbook,
        lab.inventory,
        "-e",
        f"@{lab.overrides}",
        *args,
        quiet_ok=quiet_ok,
        control_dir=lab.workdir / "cp",
    )
    seconds = time.monotonic() - start
    cpu = _busy_cpu_seconds() - cpu_before
    if run.rc != 0:
        hosts = len(lab.nodes)
        raise SystemExit(f"{playbook.name} on {hosts} host(s) failed:\n{run.output[-4000:]}")
    first = run.recap[lab.nodes[0].name]
    return Measured(seconds, cpu, run.changed(), first["ok"] + first["skipped"])


def converge(hosts: int) -> tuple[Measured, Measured]:
    """A fresh converge of `hosts` hosts, then the re-run."""
    with harness.lab([NODE_GROUPS] * hosts, tag="bench") as lab:
        fresh = _measure(lab, harness.PLAYBOOKS / "site.yml")
        rerun = _measure(lab, harness.PLAYBOOKS / "site.yml", quiet_ok=True)
        return fresh, rerun


def noop(hosts: int, tasks: int) -> Measured:
    with harness.lab([NODE_GROUPS] * hosts, tag="bench") as lab:
        return _measure(lab, _noop_playbook(lab.workdir, tasks))


def median(runs: list[Measured]) -> Measured:
    return Measured(
        statistics.median(m.seconds for m in runs),
        statistics.median(m.cpu for m in runs),
        runs[0].changed,
        runs[0].tasks,
    )


def row(label: str, m: Measured, runs: list[Measured], target: str = "") -> str:
    each = " / ".join(f"{r.seconds:.1f}" for r in runs)
    return (
        f"| {label} | {m.seconds:.1f} ({each}) | {m.cpu:.1f} | {m.tasks} | {m.changed} | {target} |"
    )


def main() -> None:
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    one_runs: list[Measured] = []
    rerun_runs: list[Measured] = []
    four_runs: list[Measured] = []
    noop_runs: dict[tuple[int, int], list[Measured]] = {}
    for rep in range(reps):
        print(f"round {rep + 1}/{reps}: site.yml", file=sys.stderr, flush=True)
        fresh, rerun = converge(1)
        one_runs.append(fresh)
        rerun_runs.append(rerun)
        four_runs.append(converge(4)[0])
        for tasks in NOOP_TASKS:
            print(f"round {rep + 1}/{reps}: no-op x{tasks}", file=sys.stderr, flush=True)
            for hosts in (1, 4):
                noop_runs.setdefault((hosts, tasks), []).append(noop(hosts, tasks))
    one, rerun, four = median(one_runs), median(rerun_runs), median(four_runs)
    ratio = four.seconds / one.seconds
    rerun_ok = rerun.seconds < 20 and all(r.changed == 0 for r in rerun_runs)
    print("## Ansible converge (bench/ansible_converge.py)")
    print()
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}; 1-minute load average at the end {os.getloadavg()[0]:.1f}. "
        f"Hosts: systemd-in-podman test hosts ({', '.join(NODE_GROUPS)} groups, packages "
        "preinstalled in the image) on the same cores as the controller; site.yml over SSH, "
        f"strategy {os.environ.get('ANSIBLE_STRATEGY', 'mitogen_linear (ansible.cfg)')}. "
        f"Wall time: median of {reps} runs (each run in brackets). CPU: the machine's busy "
        "CPU-seconds during the run (median)."
    )
    print()
    print("| measurement | wall s | CPU s | tasks/host | changed | target |")
    print("|---|---|---|---|---|---|")
    print(row("site.yml fresh converge, 1 host", one, one_runs))
    print(
        row(
            "site.yml idempotent re-run, 1 host",
            rerun,
            rerun_runs,
            f"< 20 s, changed=0: {'met' if rerun_ok else 'MISSED'}",
        )
    )
    print(
        row(
            "site.yml fresh converge, 4 hosts at once",
            four,
            four_runs,
            f"< 1.5x one host: {ratio:.2f}x, {'met' if ratio < 1.5 else 'MISSED'}",
        )
    )
    for tasks in NOOP_TASKS:
        runs1, runs4 = noop_runs[(1, tasks)], noop_runs[(4, tasks)]
        m1, m4 = median(runs1), median(runs4)
        print(row(f"no-op, {tasks} task(s), 1 host", m1, runs1))
        print(row(f"no-op, {tasks} task(s), 4 hosts", m4, runs4, f"{m4.seconds / m1.seconds:.2f}x"))


if __name__ == "__main__":
    main()
