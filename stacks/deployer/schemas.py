"""Request and response models of the API; validation of everything a user sends."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

DNS_LABEL = r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_ENV_VARS = 100
MAX_ENV_VALUE_BYTES = 4096
MAX_ENV_TOTAL_BYTES = 32 * 1024
IMAGE_NAME = re.compile(
    r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]{1,5})?(/[a-z0-9]+([._-]{1,2}[a-z0-9]+)*)*$"
)
IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
IMAGE_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
# The same rules as `check_image`, for the OpenAPI document: a tag or a digest is required,
# and a bare `:latest` is excluded by the `not` clause.
_NAME, _TAG, _DIGEST = (p.pattern.strip("^$") for p in (IMAGE_NAME, IMAGE_TAG, IMAGE_DIGEST))
IMAGE_REF_PATTERN = f"^{_NAME}(:{_TAG}(@{_DIGEST})?|@{_DIGEST})$"
IMAGE_LATEST_PATTERN = r":latest$"


def errors_detail(errors: Sequence[Mapping[str, Any]]) -> str:
    """One short line naming each bad field, e.g. `image: ':latest' is refused; ...`."""
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(x) for x in err["loc"] if x != "body") or "body"
        parts.append(f"{loc}: {str(err['msg']).removeprefix('Value error, ')}")
    return "; ".join(parts) or "invalid input"


def check_image(ref: str) -> str:
    """Accept only references that pin a tag (not `latest`) or a digest."""
    name, _, digest = ref.partition("@")
    if digest and not IMAGE_DIGEST.match(digest):
        raise ValueError("digest must be sha256:<64 hex digits>")
    last = name.rsplit("/", 1)[-1]
    tag = ""
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        if not IMAGE_TAG.match(tag):
            raise ValueError(f"tag {tag!r} is not a valid image tag")
    if not IMAGE_NAME.match(name):
        raise ValueError(f"{name!r} is not a valid image name (lowercase, e.g. registry/app:1.2)")
    if not digest and not tag:
        raise ValueError("must pin an explicit tag or digest (e.g. app:1.2); untagged is refused")
    if tag == "latest" and not digest:
        raise ValueError("':latest' is refused; pin an explicit tag or digest")
    if not re.match(IMAGE_REF_PATTERN, ref):
        raise ValueError(f"{ref!r} is not a valid image reference")
    return ref


def check_name(name: str) -> str:
    if not re.match(DNS_LABEL, name):
        raise ValueError(
            "must be a DNS label: lowercase letters, digits and '-', starting with a letter, "
            "not ending with '-', at most 63 characters"
        )
    return name


def check_env(env: dict[str, str]) -> dict[str, str]:
    if len(env) > MAX_ENV_VARS:
        raise ValueError(f"at most {MAX_ENV_VARS} variables")
    total = 0
    for key, value in env.items():
        if not ENV_NAME.match(key):
            raise ValueError(f"{key[:40]!r} is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)")
        if key == "PORT" or key.startswith("PORT_"):
            raise ValueError(f"{key} is reserved: the runtime sets PORT and PORT_<ROUTE>")
        size = len(value.encode())
        if size > MAX_ENV_VALUE_BYTES:
            raise ValueError(f"value of {key} is larger than {MAX_ENV_VALUE_BYTES} bytes")
        total += size + len(key)
    if total > MAX_ENV_TOTAL_BYTES:
        raise ValueError(f"variables total more than {MAX_ENV_TOTAL_BYTES} bytes")
    return env


ServiceName = Annotated[
    str,
    Field(min_length=1, max_length=63, json_schema_extra={"pattern": DNS_LABEL}),
    AfterValidator(check_name),
]
ImageRef = Annotated[
    str,
    Field(
        min_length=1,
        max_length=255,
        json_schema_extra={
            "pattern": IMAGE_REF_PATTERN,
            "not": {"pattern": IMAGE_LATEST_PATTERN},
        },
    ),
    AfterValidator(check_image),
]
Port = Annotated[int, Field(ge=1, le=65535)]
HealthPath = Annotated[str, Field(pattern=r"^/[A-Za-z0-9._~/%?=&+-]*$", max_length=200)]


class RouteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,30}$")
    port: Port


class ServiceSpec(BaseModel):
    """What a user asks to run: one container image behind one port."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: ServiceName
    image: ImageRef
    port: Port = 8080
    env: Annotated[dict[str, str], AfterValidator(check_env)] = Field(
        default_factory=dict,
        json_schema_extra={
            "maxProperties": MAX_ENV_VARS,
            "propertyNames": {"pattern": ENV_NAME.pattern},
        },
    )
    replicas: int = Field(default=1, ge=1, le=10)
    cpu: float | None = Field(default=None, ge=0.05, le=16)
    memory_mb: int | None = Field(default=None, ge=16, le=65536)
    health_path: HealthPath = "/"
    routes: list[RouteSpec] = Field(default_factory=list, max_length=10)

    @field_validator("routes")
    @classmethod
    def _unique_routes(cls, routes: list[RouteSpec]) -> list[RouteSpec]:
        names = [r.name for r in routes]
        if len(set(names)) != len(names):
            raise ValueError("route names must be unique")
        return routes


class DeploymentOut(BaseModel):
    id: str
    seq: int
    status: str
    reason: str
    image: str
    url: str | None
    error: str
    logs: str
    created_at: datetime
    finished_at: datetime | None


class ServiceOut(BaseModel):
    name: str
    status: str
    desired_state: str
    url: str | None
    image: str
    spec: ServiceSpec
    current_deployment: DeploymentOut | None
    previous_deployment: DeploymentOut | None
    created_at: datetime
    updated_at: datetime


# Listing is paged: one page is cheap however many services a tenant has.
DEFAULT_PAGE = 100
MAX_PAGE = 500
# Lines a logs request may ask for, on REST and MCP alike.
MAX_LOG_TAIL = 10000


class ServiceList(BaseModel):
    services: list[ServiceOut]
    next_cursor: str | None = Field(
        default=None,
        description="pass as `cursor` for the next page; null on the last page",
    )


class DeploymentList(BaseModel):
    deployments: list[DeploymentOut]


class LogsOut(BaseModel):
    service: str
    deployment_id: str | None
    logs: str


class DeleteOut(BaseModel):
    name: str
    deleted: Literal[True] = True


class WhoAmI(BaseModel):
    tenant: str
    key_name: str
    key_prefix: str


class ErrorOut(BaseModel):
    detail: str
