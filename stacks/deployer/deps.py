"""FastAPI dependencies: the shared state, a store session and the caller's tenant."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from stacks.deployer.auth import KeyVerifier, Principal
from stacks.deployer.deploys import Deployer
from stacks.deployer.settings import Settings

UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


@dataclass
class AppState:
    settings: Settings
    sessions: sessionmaker[Session]
    deployer: Deployer
    verifier: KeyVerifier


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.pier
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    with state.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer pier_...`")


def authenticate(state: AppState, session: Session, authorization: str | None) -> Principal:
    """The one place that turns a presented key into a tenant; REST and MCP both use it."""
    if not authorization:
        raise HTTPException(
            401, "missing API key: send 'Authorization: Bearer <key>'", UNAUTHORIZED
        )
    principal = state.verifier.verify(session, authorization)
    if principal is None:
        raise HTTPException(401, "invalid API key", UNAUTHORIZED)
    return principal


def current_principal(
    state: StateDep,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    return authenticate(state, session, credentials.credentials if credentials else None)


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def get_deployer(state: StateDep) -> Deployer:
    return state.deployer


DeployerDep = Annotated[Deployer, Depends(get_deployer)]
