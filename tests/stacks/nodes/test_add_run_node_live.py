"""add-run-node for real: grows a live environment by one run node (gated).

Runs only with PIER_E2E_ENV naming an environment whose stack config is in stacks/infra/, the
pulumi CLI (logged in to that stack's backend), kubectl and a KUBECONFIG for its cluster, and
the Ansible secrets (VAULT_ADDR + credentials). It really creates a server: use staging.
"""

from __future__ import annotations

import os
import shutil

import pytest

from stacks.nodes import add_run_node as arn
from stacks.nodes import stack_config
from stacks.nodes.add_run_node import Options


@pytest.mark.gated
def test_real_flow_against_a_live_environment() -> None:
    env = os.environ.get("PIER_E2E_ENV")
    missing = [
        what
        for what, ok in (
            ("PIER_E2E_ENV", bool(env)),
            ("pulumi on PATH", shutil.which("pulumi") is not None),
            ("kubectl on PATH", shutil.which("kubectl") is not None),
            ("KUBECONFIG", bool(os.environ.get("KUBECONFIG"))),
        )
        if not ok
    ]
    if missing:
        pytest.skip(f"needs a live environment; missing: {', '.join(missing)}")
    assert env is not None
    before = stack_config.node_names(env)["run"]
    result = arn.add_run_node(Options(env=env))
    assert result.steps_run == [1, 2, 3, 4, 5, 6, 7]
    assert stack_config.node_names(env)["run"] == [*before, result.name]
