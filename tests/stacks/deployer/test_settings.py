"""Settings: defaults for the embedded setup, placeholder secrets refused in production."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stacks.deployer.settings import DEFAULT_DATABASE_URL, Settings


def test_defaults_are_the_embedded_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DATABASE_URL", "PIER_DATABASE_URL", "PIER_ENVIRONMENT", "PIER_RUNTIME_SCOPE"):
        monkeypatch.delenv(var, raising=False)
    settings = Settings()
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert (
        settings.database_url.startswith("sqlite:///") and ".pier/local/" in settings.database_url
    )
    assert settings.environment == "development" and settings.runtime == "podman"


def test_database_url_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://pier:s3cr3t-long@db/pier")
    monkeypatch.setenv("PIER_ENVIRONMENT", "production")
    assert Settings().database_url.endswith("@db/pier")


@pytest.mark.parametrize("password", ["changethis", "postgres", "Password"])
def test_placeholder_password_refused_in_production(
    monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql+psycopg://pier:{password}@db/pier")
    monkeypatch.setenv("PIER_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="placeholder password"):
        Settings()
    monkeypatch.setenv("PIER_ENVIRONMENT", "development")
    assert Settings().environment == "development"


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIER_ENVIRONMENT", "staging-ish")
    with pytest.raises(ValidationError, match="environment"):
        Settings()
    monkeypatch.setenv("PIER_ENVIRONMENT", "development")
    monkeypatch.setenv("PIER_RUNTIME_SCOPE", "has space")
    with pytest.raises(ValidationError, match="runtime_scope"):
        Settings()
