"""Where the client finds the API: env first, then the config file, then `invoke up`'s files."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacks.deployer.client import ClientConfigError, load_client_config


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIER_API_URL", raising=False)
    monkeypatch.delenv("PIER_API_KEY", raising=False)


def test_order_env_then_file_then_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = tmp_path / "local"
    local.mkdir()
    (local / "api-url").write_text("http://127.0.0.1:8600\n")
    (local / "api-key").write_text("pier_local\n")
    config = tmp_path / "client.toml"
    assert load_client_config(config, local) == ("http://127.0.0.1:8600", "pier_local")
    config.write_text('url = "http://api.example:80"\napi_key = "pier_file"\n')
    assert load_client_config(config, local) == ("http://api.example:80", "pier_file")
    monkeypatch.setenv("PIER_API_URL", "http://env:1")
    monkeypatch.setenv("PIER_API_KEY", "pier_env")
    assert load_client_config(config, local) == ("http://env:1", "pier_env")


def test_nothing_configured_says_where(tmp_path: Path) -> None:
    with pytest.raises(ClientConfigError, match="set PIER_API_URL and PIER_API_KEY"):
        load_client_config(tmp_path / "none.toml", tmp_path)


def test_bad_config_file(tmp_path: Path) -> None:
    config = tmp_path / "client.toml"
    config.write_text("url = \n")
    with pytest.raises(ClientConfigError, match="not valid TOML"):
        load_client_config(config, tmp_path)


def test_local_dir_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "api-url").write_text("http://127.0.0.1:9\n")
    (tmp_path / "api-key").write_text("pier_k\n")
    monkeypatch.setenv("PIER_LOCAL_DIR", str(tmp_path))
    assert load_client_config(tmp_path / "none.toml") == ("http://127.0.0.1:9", "pier_k")
