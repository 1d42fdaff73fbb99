"""Provider tokens (Hetzner Cloud, Cloudflare): from Vault KV v2, else Pulumi secret config.

Whatever the source, a token only ever exists in the program as a secret `pulumi.Output`, so
the engine encrypts it in state and masks it in logs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import hvac
import hvac.exceptions
import pulumi
import requests

from stacks.infra.config import InfraConfig

HCLOUD_KEY = "hcloud_token"
CLOUDFLARE_KEY = "cloudflare_api_token"


class TokenError(RuntimeError):
    """A token could not be read; the message says from where and what to do."""


@dataclass(frozen=True)
class ProviderTokens:
    hcloud: pulumi.Output[str]
    cloudflare: pulumi.Output[str]
    source: str


def _secret_pair(values: Mapping[str, str], source: str) -> ProviderTokens:
    return ProviderTokens(
        hcloud=pulumi.Output.secret(values[HCLOUD_KEY]),
        cloudflare=pulumi.Output.secret(values[CLOUDFLARE_KEY]),
        source=source,
    )


def read_vault(addr: str, vault_token: str, mount: str, path: str) -> dict[str, str]:
    """Both tokens from the KV v2 secret `mount`/`path` (keys hcloud_token, cloudflare_api_token).

    Raises `TokenError` with what to do when the secret cannot be read.
    """
    where = f"{addr} {mount}/{path}"
    client = hvac.Client(url=addr, token=vault_token, timeout=10)
    try:
        response = client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=mount, raise_on_deleted_version=True
        )
    except hvac.exceptions.Forbidden as exc:
        raise TokenError(f"Vault refused to read {where}: check VAULT_TOKEN's policy") from exc
    except hvac.exceptions.InvalidPath as exc:
        raise TokenError(f"Vault has no secret at {where}: write it with `vault kv put`") from exc
    except (hvac.exceptions.VaultError, requests.RequestException) as exc:
        raise TokenError(f"cannot read {where} from Vault: {type(exc).__name__}") from exc
    data = response.get("data", {}).get("data", {})
    missing = [k for k in (HCLOUD_KEY, CLOUDFLARE_KEY) if not data.get(k)]
    if missing:
        raise TokenError(f"Vault secret {where} has no {missing[0]!r} key: add it")
    return {HCLOUD_KEY: str(data[HCLOUD_KEY]), CLOUDFLARE_KEY: str(data[CLOUDFLARE_KEY])}


def from_vault(cfg: InfraConfig, env: Mapping[str, str]) -> ProviderTokens:
    vault_token = env.get("VAULT_TOKEN", "")
    if not vault_token:
        raise TokenError("VAULT_ADDR is set but VAULT_TOKEN is not: export a Vault token")
    mount = cfg.vault.mount if cfg.vault else "secret"
    path = cfg.vault.path if cfg.vault else f"pier/{cfg.env}/providers"
    values = read_vault(env["VAULT_ADDR"], vault_token, mount, path)
    return _secret_pair(values, source=f"vault:{mount}/{path}")


def from_pulumi_config() -> ProviderTokens:
    """The tokens set with `pulumi config set --secret <key> ...` on this stack."""
    conf = pulumi.Config()
    for key in (HCLOUD_KEY, CLOUDFLARE_KEY):
        if conf.get(key) is None:
            raise TokenError(
                f"no {key}: set VAULT_ADDR/VAULT_TOKEN"
                f" or run `pulumi config set --secret {key} ...`"
            )
    return ProviderTokens(
        hcloud=conf.require_secret(HCLOUD_KEY),
        cloudflare=conf.require_secret(CLOUDFLARE_KEY),
        source="pulumi-config",
    )


def load(cfg: InfraConfig, env: Mapping[str, str] | None = None) -> ProviderTokens:
    """Vault when VAULT_ADDR is set, else the stack's secret config."""
    environ = os.environ if env is None else env
    if environ.get("VAULT_ADDR"):
        return from_vault(cfg, environ)
    return from_pulumi_config()


def placeholders() -> ProviderTokens:
    """Stand-ins for credential-free evaluation under mocks (still secrets, like real ones)."""
    return _secret_pair(
        {HCLOUD_KEY: "plan-placeholder-hcloud", CLOUDFLARE_KEY: "plan-placeholder-cloudflare"},
        source="placeholder",
    )
