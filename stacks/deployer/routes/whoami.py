"""/v1/whoami: which tenant and key a request acts as; /healthz for liveness probes."""

from __future__ import annotations

from fastapi import APIRouter

from stacks.deployer.deps import PrincipalDep
from stacks.deployer.schemas import ErrorOut, WhoAmI

router = APIRouter(tags=["meta"])


@router.get("/v1/whoami", responses={401: {"model": ErrorOut}})
def whoami(principal: PrincipalDep) -> WhoAmI:
    return WhoAmI(
        tenant=principal.tenant, key_name=principal.key_name, key_prefix=principal.key_prefix
    )


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
