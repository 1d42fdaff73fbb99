"""/v1/services: create, read, redeploy, roll back, stop, start, restart, delete, logs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Response

from stacks.deployer.deps import DeployerDep, PrincipalDep
from stacks.deployer.schemas import (
    DEFAULT_PAGE,
    DNS_LABEL,
    MAX_LOG_TAIL,
    MAX_PAGE,
    DeleteOut,
    DeploymentList,
    ErrorOut,
    LogsOut,
    ServiceList,
    ServiceOut,
    ServiceSpec,
)

ERRORS = {
    401: {"model": ErrorOut, "description": "missing or invalid API key"},
    404: {"model": ErrorOut, "description": "no such service for this tenant"},
    409: {"model": ErrorOut, "description": "conflicts with the service's state"},
    422: {"model": ErrorOut, "description": "invalid input"},
}
NameParam = Annotated[str, Path(pattern=DNS_LABEL, max_length=63, description="service name")]
router = APIRouter(prefix="/v1/services", tags=["services"], responses=ERRORS)  # type: ignore[arg-type]


@router.post("", status_code=201)
def create_service(spec: ServiceSpec, principal: PrincipalDep, deployer: DeployerDep) -> ServiceOut:
    """Create a service and run its first deploy; answers when it is live or failed."""
    return deployer.create(principal, spec)


@router.get("", response_model=ServiceList)
def list_services(
    principal: PrincipalDep,
    deployer: DeployerDep,
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE, description="services per page (by name)")
    ] = DEFAULT_PAGE,
    cursor: Annotated[
        str | None,
        Query(
            pattern=DNS_LABEL,
            max_length=63,
            description="`next_cursor` of the previous page; omit for the first page",
        ),
    ] = None,
) -> Response:
    """This tenant's services by name, one page at a time: follow `next_cursor` until null."""
    # Serialised once here: FastAPI's own path dumps and re-validates every item first, which
    # made listing 1,000 services several times slower.
    body = deployer.list_page(principal, limit=limit, cursor=cursor).model_dump_json()
    return Response(content=body, media_type="application/json")


@router.get("/{name}")
def get_service(name: NameParam, principal: PrincipalDep, deployer: DeployerDep) -> ServiceOut:
    return deployer.get(principal, name)


@router.get("/{name}/deployments")
def list_deployments(
    name: NameParam, principal: PrincipalDep, deployer: DeployerDep
) -> DeploymentList:
    """The service's deployment history, newest first."""
    return DeploymentList(deployments=deployer.deployments(principal, name))


@router.get("/{name}/logs")
def service_logs(
    name: NameParam,
    principal: PrincipalDep,
    deployer: DeployerDep,
    tail: Annotated[int, Query(ge=0, le=MAX_LOG_TAIL, description="last N lines")] = 100,
) -> LogsOut:
    return deployer.logs(principal, name, tail)


@router.post("/{name}/redeploy")
def redeploy_service(
    name: NameParam,
    principal: PrincipalDep,
    deployer: DeployerDep,
    spec: Annotated[
        ServiceSpec | None, Body(description="new spec; omit to redeploy as is")
    ] = None,
) -> ServiceOut:
    """Deploy again (optionally a new spec); the old deployment serves until the new is healthy."""
    return deployer.redeploy(principal, name, spec)


@router.post("/{name}/rollback")
def rollback_service(name: NameParam, principal: PrincipalDep, deployer: DeployerDep) -> ServiceOut:
    """Deploy the previous healthy deployment's spec again."""
    return deployer.rollback(principal, name)


@router.post("/{name}/stop")
def stop_service(name: NameParam, principal: PrincipalDep, deployer: DeployerDep) -> ServiceOut:
    return deployer.stop(principal, name)


@router.post("/{name}/start")
def start_service(name: NameParam, principal: PrincipalDep, deployer: DeployerDep) -> ServiceOut:
    return deployer.start(principal, name)


@router.post("/{name}/restart")
def restart_service(name: NameParam, principal: PrincipalDep, deployer: DeployerDep) -> ServiceOut:
    return deployer.restart(principal, name)


@router.delete("/{name}")
def delete_service(name: NameParam, principal: PrincipalDep, deployer: DeployerDep) -> DeleteOut:
    """Remove the service's workloads and its records."""
    return deployer.delete(principal, name)
