"""The pier_vault_kv lookup (ansible/plugins/lookup) reads secrets through hvac.

No Vault server exists here: a local HTTP server speaks the two endpoints the plugin uses (KV v2
read, AppRole login). A gated test reads from a real Vault when VAULT_ADDR, VAULT_TOKEN and
PIER_VAULT_TEST_PATH (path/key of an existing secret) are set.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ansible import harness
from tests.local_vault import local_vault

TOKEN = "s.pier-test-vault-token"
ROLE_ID, SECRET_ID = "pier-role", "pier-secret"


@pytest.fixture
def vault() -> Iterator[tuple[str, str]]:
    value = f"K10{secrets.token_hex(20)}"
    stored = {"secret/pier/test/k3s": {"token": value}}
    with local_vault(stored, token=TOKEN, approle=(ROLE_ID, SECRET_ID)) as server:
        yield server.url, value


PLAY = """
- name: Read the join token from Vault
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Write the token
      ansible.builtin.copy:
        content: "{{ lookup('pier_vault_kv', secret_path, key=secret_key) }}"
        dest: "{{ out }}"
        mode: "0600"
      no_log: true
"""


def _play(
    tmp_path: Path, env: dict[str, str], path: str, key: str
) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY)
    base = harness.ansible_env(tmp_path / "cp")
    for name in ("VAULT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID", "VAULT_ADDR"):
        base.pop(name, None)
    return subprocess.run(
        [
            harness._bin("ansible-playbook"),
            "-i",
            "localhost,",
            str(playbook),
            "-e",
            f"secret_path={path} secret_key={key} out={tmp_path / 'out'}",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
        ],
        capture_output=True,
        text=True,
        env={**base, **env},
        timeout=120,
        check=False,
    )


def test_lookup_with_token_never_logs(vault: tuple[str, str], tmp_path: Path) -> None:
    addr, value = vault
    run = _play(tmp_path, {"VAULT_ADDR": addr, "VAULT_TOKEN": TOKEN}, "pier/test/k3s", "token")
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "out").read_text() == value
    assert value not in run.stdout + run.stderr


def test_lookup_with_approle(vault: tuple[str, str], tmp_path: Path) -> None:
    addr, value = vault
    env = {"VAULT_ADDR": addr, "VAULT_ROLE_ID": ROLE_ID, "VAULT_SECRET_ID": SECRET_ID}
    run = _play(tmp_path, env, "pier/test/k3s", "token")
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "out").read_text() == value


@pytest.mark.parametrize(
    ("env", "path", "key", "message"),
    [
        ({}, "pier/test/k3s", "token", "VAULT_ADDR is not set"),
        ({"VAULT_TOKEN": TOKEN}, "pier/test/k3s", "nope", "has no key 'nope'"),
        (
            {"VAULT_TOKEN": TOKEN},
            "pier/test/missing",
            "token",
            "cannot read secret/pier/test/missing",
        ),
        ({"VAULT_TOKEN": "s.wrong"}, "pier/test/k3s", "token", "cannot read secret/pier/test/k3s"),
        (
            {"VAULT_ROLE_ID": ROLE_ID, "VAULT_SECRET_ID": "bad"},
            "pier/test/k3s",
            "token",
            "AppRole login",
        ),
    ],
)
def test_lookup_errors_are_clear(
    vault: tuple[str, str], tmp_path: Path, env: dict[str, str], path: str, key: str, message: str
) -> None:
    addr, value = vault
    full_env = {"VAULT_ADDR": addr, **env} if env else {}
    run = _play(tmp_path, full_env, path, key)
    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert message in output, output
    assert value not in output


@pytest.mark.gated
@pytest.mark.skipif(
    not (os.environ.get("VAULT_ADDR") and os.environ.get("PIER_VAULT_TEST_PATH")),
    reason="needs a real Vault: set VAULT_ADDR, VAULT_TOKEN and PIER_VAULT_TEST_PATH=path:key",
)
def test_lookup_against_real_vault(tmp_path: Path) -> None:
    path, _, key = os.environ["PIER_VAULT_TEST_PATH"].partition(":")
    env = {k: v for k, v in os.environ.items() if k.startswith("VAULT_")}
    run = _play(tmp_path, env, path, key)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "out").read_text()
