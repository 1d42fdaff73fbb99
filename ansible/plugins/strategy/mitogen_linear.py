"""Ansible strategy `mitogen_linear`: the linear strategy run over Mitogen.

Mitogen keeps one Python interpreter per host alive for the whole run and sends module code once,
instead of one SSH exec + module zip per task: on our test hosts this cuts a host's CPU per
converge by about 3x (bench/ansible_converge.py). The plugin lives in the `mitogen` package (a
project dependency, so it is in the venv next to ansible-playbook); this file only makes it
findable through ansible.cfg's relative strategy_plugins path, so no path into the venv is needed.
Run without it with ANSIBLE_STRATEGY=linear.
"""

from __future__ import annotations

from ansible.errors import AnsibleError

try:
    from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule
except ImportError as exc:  # the venv lacks mitogen: say how to fix it, not a traceback
    raise AnsibleError(
        "ansible.cfg uses the mitogen_linear strategy but the `mitogen` package is not "
        "installed in this Python: run `pip install -e .` (it is a pier dependency), or run "
        "with ANSIBLE_STRATEGY=linear"
    ) from exc

__all__ = ["StrategyModule"]
