"""Ansible lookup: read one key of a Vault KV v2 secret through hvac.

    {{ lookup('pier_vault_kv', 'pier/prod/k3s', key='token') }}
    {{ lookup('pier_vault_kv', 'pier/prod/k3s', key='token', mount='secret') }}

Connection from the environment: VAULT_ADDR, and VAULT_TOKEN or an AppRole
(VAULT_ROLE_ID + VAULT_SECRET_ID); VAULT_NAMESPACE and VAULT_CACERT are honoured. Errors name
the path and key, never a value, so a failed lookup cannot leak a secret into the log.
"""

from __future__ import annotations

import os
from typing import Any

from ansible.errors import AnsibleError

from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: pier_vault_kv
short_description: Read a key of a Vault KV v2 secret (hvac)
description:
  - Returns the value of O(key) in the KV v2 secret at each term's path.
  - Authenticates with VAULT_TOKEN, or AppRole VAULT_ROLE_ID/VAULT_SECRET_ID, against VAULT_ADDR.
options:
  _terms:
    description: Secret paths below the mount.
    required: true
  key:
    description: Key inside the secret.
    required: true
  mount:
    description: KV v2 mount point.
    default: secret
"""


def _client() -> Any:
    try:
        import hvac
    except ImportError as exc:
        raise AnsibleError(
            "pier_vault_kv needs the hvac Python package (pip install hvac)"
        ) from exc
    addr = os.environ.get("VAULT_ADDR")
    if not addr:
        raise AnsibleError(
            "pier_vault_kv: VAULT_ADDR is not set; export VAULT_ADDR and VAULT_TOKEN (or "
            "VAULT_ROLE_ID/VAULT_SECRET_ID), or set the secret as an ansible-vault variable"
        )
    client = hvac.Client(
        url=addr,
        token=os.environ.get("VAULT_TOKEN"),
        namespace=os.environ.get("VAULT_NAMESPACE"),
        verify=os.environ.get("VAULT_CACERT", True),
    )
    role_id, secret_id = os.environ.get("VAULT_ROLE_ID"), os.environ.get("VAULT_SECRET_ID")
    if not os.environ.get("VAULT_TOKEN") and role_id and secret_id:
        try:
            client.auth.approle.login(role_id=role_id, secret_id=secret_id)
        except Exception as exc:  # hvac raises many types; the message names none of the inputs
            raise AnsibleError(
                f"pier_vault_kv: AppRole login at {addr} failed: {type(exc).__name__}"
            ) from exc
    if not client.token:
        raise AnsibleError(
            "pier_vault_kv: no Vault credentials: set VAULT_TOKEN or VAULT_ROLE_ID/VAULT_SECRET_ID"
        )
    return client


class LookupModule(LookupBase):
    def run(
        self, terms: list[Any], variables: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[Any]:
        self.set_options(var_options=variables, direct=kwargs)
        key = self.get_option("key")
        mount = self.get_option("mount")
        client = _client()
        values: list[Any] = []
        for path in terms:
            try:
                secret = client.secrets.kv.v2.read_secret_version(
                    path=path, mount_point=mount, raise_on_deleted_version=True
                )
            except Exception as exc:
                raise AnsibleError(
                    f"pier_vault_kv: cannot read {mount}/{path} from Vault: {type(exc).__name__}; "
                    "check the path and the token's policy"
                ) from exc
            data = secret.get("data", {}).get("data", {})
            if key not in data:
                raise AnsibleError(f"pier_vault_kv: secret {mount}/{path} has no key {key!r}")
            values.append(data[key])
        return values
