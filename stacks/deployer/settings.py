"""Settings of the deployment API, read from the environment once at start."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
LOCAL_DIR = ROOT / ".pier" / "local"
DEFAULT_DATABASE_URL = f"sqlite:///{LOCAL_DIR / 'deployer.db'}"

# Passwords that only ever appear in examples; a production store must not run on them.
PLACEHOLDER_SECRETS = frozenset(
    {"changethis", "changeme", "password", "secret", "postgres", "pier"}
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PIER_", extra="ignore")

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        validation_alias=AliasChoices("DATABASE_URL", "PIER_DATABASE_URL"),
    )
    environment: Literal["development", "production"] = "development"
    runtime: Literal["podman"] = "podman"
    # Scopes the containers this API manages, so two APIs on one host never touch each other's.
    runtime_scope: str = Field(default="local", pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    # Where the podman driver keeps its service proxy state.
    runtime_dir: Path = LOCAL_DIR / "runtime"
    # Seconds a new deployment has to answer its health check before it is marked failed.
    health_timeout: float = Field(default=30.0, gt=0, le=600)
    # Seconds a verified API key stays trusted in memory (argon2 is deliberately slow).
    key_cache_seconds: float = Field(default=60.0, ge=0, le=3600)
    reconcile_on_start: bool = True
    # Seconds between sweeps for orphaned containers while the API runs; 0 turns them off.
    sweep_interval: float = Field(default=60.0, ge=0, le=86400)

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> Settings:
        if self.environment == "development":
            return self
        password = make_url(self.database_url).password
        if password is not None and str(password).lower() in PLACEHOLDER_SECRETS:
            raise ValueError(
                "DATABASE_URL uses a placeholder password; set a real one for production"
            )
        return self
