"""Service definition files (TOML): one service per file, possibly several components.

    name = "shop"                      # the service; a DNS label
    [env]                              # optional, shared by every component
    SHOP_MODE = "demo"
    [components.web]                   # deployed as service "shop"
    image = "localhost/shop:1.4"
    port = 8080
    health_path = "/healthz"
    [components.worker]                # deployed as service "shop-worker"
    image = "localhost/shop-worker:1.4"
    replicas = 2

Each component runs as its own API service: `web` under the service's name, every other
component as `<service>-<component>`. A file is checked completely before anything is deployed.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from stacks.deployer.client import PierClient
from stacks.deployer.schemas import (
    HealthPath,
    Port,
    RouteSpec,
    ServiceName,
    ServiceSpec,
    check_env,
    errors_detail,
)

PRIMARY_COMPONENT = "web"
MAX_COMPONENTS = 10


class DefinitionError(ValueError):
    """A definition file is unreadable or invalid; the message names the file and the key."""


class ComponentDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str
    port: Port = 8080
    env: Annotated[dict[str, str], AfterValidator(check_env)] = Field(default_factory=dict)
    replicas: int = Field(default=1, ge=1, le=10)
    cpu: float | None = Field(default=None, ge=0.05, le=16)
    memory_mb: int | None = Field(default=None, ge=16, le=65536)
    health_path: HealthPath = "/"
    routes: list[RouteSpec] = Field(default_factory=list, max_length=10)


ComponentName = Annotated[str, Field(pattern=r"^[a-z]([a-z0-9-]{0,20}[a-z0-9])?$")]


class ServiceDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ServiceName
    env: Annotated[dict[str, str], AfterValidator(check_env)] = Field(default_factory=dict)
    components: dict[ComponentName, ComponentDef] = Field(min_length=1, max_length=MAX_COMPONENTS)

    def specs(self) -> list[ServiceSpec]:
        """One API service spec per component, the primary component first."""
        out: list[ServiceSpec] = []
        for comp_name, comp in sorted(
            self.components.items(), key=lambda kv: (kv[0] != PRIMARY_COMPONENT, kv[0])
        ):
            name = self.name if comp_name == PRIMARY_COMPONENT else f"{self.name}-{comp_name}"
            raw: dict[str, Any] = comp.model_dump(mode="json")
            raw["env"] = {**self.env, **comp.env}
            try:
                out.append(ServiceSpec.model_validate({"name": name, **raw}))
            except ValidationError as exc:
                raise DefinitionError(
                    f"components.{comp_name}: {errors_detail(exc.errors())}"
                ) from exc
        return out


def load_definition(path: Path) -> ServiceDefinition:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise DefinitionError(f"{path}: cannot read ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise DefinitionError(f"{path}: not valid TOML ({exc})") from exc
    try:
        definition = ServiceDefinition.model_validate(data)
        definition.specs()
    except ValidationError as exc:
        raise DefinitionError(f"{path}: {errors_detail(exc.errors())}") from exc
    except DefinitionError as exc:
        raise DefinitionError(f"{path}: {exc}") from exc
    return definition


def deploy_definition(
    client: PierClient,
    path: Path,
    on_progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Create or redeploy every component of the file's service; returns the API's answers."""
    definition = load_definition(path)
    results = []
    for spec in definition.specs():
        if on_progress is not None:
            on_progress(f"deploying {spec.name} ({spec.image})")
        results.append(client.deploy(spec.model_dump(mode="json")))
    return results
