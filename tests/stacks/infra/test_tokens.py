"""Provider tokens: Vault KV v2 (a local server speaking the endpoint we use, plus a gated test
against a real Vault), Pulumi secret config, and secrecy of every token value."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pulumi
import pytest
from pulumi.runtime.sync_await import _sync_await

from stacks.infra import config, tokens
from stacks.infra.tokens import CLOUDFLARE_KEY, HCLOUD_KEY, TokenError
from tests.local_vault import LocalVault, local_vault
from tests.stacks.infra.conftest import minimal_raw

VAULT_TOKEN = "s.test-" + uuid.uuid4().hex
SECRETS: dict[str, dict[str, str]] = {
    "secret/pier/mini/providers": {HCLOUD_KEY: "hc-123", CLOUDFLARE_KEY: "cf-456"},
    "kv/half": {HCLOUD_KEY: "hc-only"},
}


@pytest.fixture
def vault() -> Iterator[LocalVault]:
    with local_vault(SECRETS, token=VAULT_TOKEN) as server:
        yield server


def _is_secret(out: pulumi.Output[str]) -> bool:
    return bool(_sync_await(out.is_secret()))


def _value(out: pulumi.Output[str]) -> str:
    return str(_sync_await(out.future()))


def _cfg() -> config.InfraConfig:
    return config.validate(minimal_raw())


def test_vault_tokens_are_read_and_secret(vault: LocalVault) -> None:
    got = tokens.load(_cfg(), {"VAULT_ADDR": vault.url, "VAULT_TOKEN": VAULT_TOKEN})
    assert got.source == "vault:secret/pier/mini/providers"
    assert _value(got.hcloud) == "hc-123" and _value(got.cloudflare) == "cf-456"
    assert _is_secret(got.hcloud) and _is_secret(got.cloudflare)
    assert ("/v1/secret/data/pier/mini/providers", VAULT_TOKEN) in vault.reads


def test_vault_path_and_mount_come_from_config(vault: LocalVault) -> None:
    raw = minimal_raw()
    raw["vault"] = {"mount": "kv", "path": "half"}
    with pytest.raises(TokenError, match="kv/half has no 'cloudflare_api_token' key"):
        tokens.load(config.validate(raw), {"VAULT_ADDR": vault.url, "VAULT_TOKEN": VAULT_TOKEN})


def test_vault_refusal_and_missing_secret_say_what_to_do(vault: LocalVault) -> None:
    with pytest.raises(TokenError, match="refused .* check VAULT_TOKEN"):
        tokens.load(_cfg(), {"VAULT_ADDR": vault.url, "VAULT_TOKEN": "wrong"})
    raw = minimal_raw()
    raw["vault"] = {"path": "nowhere"}
    with pytest.raises(TokenError, match="no secret at .*secret/nowhere: write it"):
        tokens.load(config.validate(raw), {"VAULT_ADDR": vault.url, "VAULT_TOKEN": VAULT_TOKEN})


def test_vault_without_token_or_unreachable() -> None:
    with pytest.raises(TokenError, match="VAULT_TOKEN is not"):
        tokens.load(_cfg(), {"VAULT_ADDR": "http://127.0.0.1:9"})
    with pytest.raises(TokenError, match="cannot read .* from Vault"):
        tokens.load(_cfg(), {"VAULT_ADDR": "http://127.0.0.1:9", "VAULT_TOKEN": "x"})


def test_pulumi_secret_config_is_used_without_vault() -> None:
    pulumi.runtime.set_mocks(_NoMocks(), project=config.PROJECT, stack="mini", preview=False)
    pulumi.runtime.set_all_config({})
    with pytest.raises(TokenError, match="pulumi config set --secret hcloud_token"):
        tokens.load(_cfg(), {})
    secret_keys = [f"{config.PROJECT}:{HCLOUD_KEY}", f"{config.PROJECT}:{CLOUDFLARE_KEY}"]
    pulumi.runtime.set_all_config(
        dict(zip(secret_keys, ["hc-cfg", "cf-cfg"], strict=True)), secret_keys
    )
    try:
        got = tokens.load(_cfg(), {})
        assert got.source == "pulumi-config"
        assert _value(got.hcloud) == "hc-cfg" and _is_secret(got.hcloud)
        assert _value(got.cloudflare) == "cf-cfg" and _is_secret(got.cloudflare)
    finally:
        pulumi.runtime.set_all_config({})


def test_placeholders_are_secret_too() -> None:
    got = tokens.placeholders()
    assert _is_secret(got.hcloud) and _is_secret(got.cloudflare)


class _NoMocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return "id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


@pytest.mark.gated
@pytest.mark.skipif(
    not (os.environ.get("VAULT_ADDR") and os.environ.get("VAULT_TOKEN")),
    reason="no real Vault: set VAULT_ADDR and VAULT_TOKEN (KV v2 at mount `secret`) to run",
)
def test_real_vault_round_trip() -> None:
    import hvac

    client = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"])
    path = f"pier-test/{uuid.uuid4().hex}"
    client.secrets.kv.v2.create_or_update_secret(
        path=path, secret={HCLOUD_KEY: "real-hc", CLOUDFLARE_KEY: "real-cf"}, mount_point="secret"
    )
    try:
        values = tokens.read_vault(
            os.environ["VAULT_ADDR"], os.environ["VAULT_TOKEN"], "secret", path
        )
        assert values == {HCLOUD_KEY: "real-hc", CLOUDFLARE_KEY: "real-cf"}
    finally:
        client.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point="secret")
