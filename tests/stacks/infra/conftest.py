"""Shared fixtures: the example stack configs, a minimal one, and cached dry runs of each."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from stacks.infra.dryrun import DryRun

# The stack modules are imported lazily: importing pulumi_cloudflare here, before
# pytest_configure ran, would bypass the warning filter below.

CF_RANGES = ["173.245.48.0/20", "103.21.244.0/22", "2400:cb00::/32"]


def minimal_raw() -> dict[str, Any]:
    """The smallest valid environment: one ctrl, one build, one run node, no vSwitch."""
    pool = {"server_type": "cx22", "locations": ["fsn1"]}
    return {
        "env": "mini",
        "domain": "mini.example.net",
        "ssh_keys": {"ops": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOps ops@pier"},
        "pools": {
            "ctrl": {**pool, "count": 1, "ip_range": "10.0.1.0/24"},
            "ops": {**pool, "count": 0, "ip_range": "10.0.2.0/24"},
            "build": {**pool, "count": 1, "ip_range": "10.0.3.0/24"},
            "run": {**pool, "count": 1, "ip_range": "10.0.16.0/20"},
        },
        "firewall": {"admin_cidrs": ["203.0.113.0/28"]},
        "cloudflare": {"account_id": "acc", "zone_id": "zone", "ip_ranges": CF_RANGES},
    }


def raw_for(env: str) -> dict[str, Any]:
    from stacks.infra import config

    if env == "minimal":
        return minimal_raw()
    return config.read_file(config.stack_file(env))


def pytest_configure(config: pytest.Config) -> None:
    # pulumi_cloudflare warns about its own deprecated resources on import; we use none of them.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_cloudflare")


ENVS = ("staging", "prod", "minimal")
_RUNS: dict[str, DryRun] = {}


@pytest.fixture(params=ENVS)
def run(request: pytest.FixtureRequest) -> DryRun:
    """A dry run of each environment (evaluated once per session: the graph does not change)."""
    from stacks.infra import config
    from stacks.infra.dryrun import dry_run

    env: str = request.param
    if env not in _RUNS:
        _RUNS[env] = dry_run(config.validate(raw_for(env)))
    return _RUNS[env]


@pytest.fixture
def raw() -> Callable[[str], dict[str, Any]]:
    """A fresh, mutable copy of an environment's raw config."""
    return lambda env: copy.deepcopy(raw_for(env))


@pytest.fixture(autouse=True)
def _event_loop() -> None:
    # Tests that call pulumi.runtime.set_mocks directly need a loop even when an earlier test
    # in the same session (the deployer's async clients) closed the previous one.
    from stacks.infra.dryrun import ensure_event_loop

    ensure_event_loop()
