"""Builds the deployment API: REST under /v1, MCP at /mcp, migrations and reconciliation on start.

Run it with `uvicorn --factory stacks.deployer.main:create_app`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.routing import Route

from stacks.deployer.auth import KeyVerifier
from stacks.deployer.db import make_engine, migrate, session_factory
from stacks.deployer.deploys import Deployer, ServiceError
from stacks.deployer.deps import AppState
from stacks.deployer.mcp_server import mcp_app
from stacks.deployer.reconcile import reconcile, sweep_orphans
from stacks.deployer.routes import services, whoami
from stacks.deployer.runtime.base import RuntimeDriver
from stacks.deployer.schemas import errors_detail
from stacks.deployer.settings import Settings

log = logging.getLogger(__name__)


def make_driver(settings: Settings) -> RuntimeDriver:
    """The runtime the settings select; imported lazily so the API imports without podman."""
    from stacks.deployer.runtime.podman import PodmanDriver

    driver: RuntimeDriver = PodmanDriver(
        state_dir=settings.runtime_dir, scope=settings.runtime_scope
    )
    return driver


async def _sweep_forever(deployer: Deployer, interval: float) -> None:
    while True:
        await anyio.sleep(interval)
        try:
            await anyio.to_thread.run_sync(sweep_orphans, deployer)
        except Exception:  # a failed sweep must not take the API down; the next one retries
            log.exception("orphan sweep failed")


def create_app(settings: Settings | None = None, driver: RuntimeDriver | None = None) -> FastAPI:
    settings = settings or Settings()
    engine = make_engine(settings.database_url)
    sessions = session_factory(engine)
    runtime = driver or make_driver(settings)
    state = AppState(
        settings=settings,
        sessions=sessions,
        deployer=Deployer(sessions, runtime, health_timeout=settings.health_timeout),
        verifier=KeyVerifier(settings.key_cache_seconds),
    )
    endpoint, manager = mcp_app(state)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(migrate, engine)
        if settings.reconcile_on_start:
            await anyio.to_thread.run_sync(reconcile, state.deployer)
        async with manager.run(), anyio.create_task_group() as tasks:
            if settings.sweep_interval > 0:
                tasks.start_soon(_sweep_forever, state.deployer, settings.sweep_interval)
            yield
            tasks.cancel_scope.cancel()
        engine.dispose()

    app = FastAPI(
        title="pier deployment API",
        version="1",
        description="Ship container services: REST under /v1, MCP tools at /mcp.",
        lifespan=lifespan,
    )
    app.state.pier = state
    app.include_router(services.router)
    app.include_router(whoami.router)
    app.router.routes.append(Route("/mcp", endpoint=endpoint, methods=["GET", "POST", "DELETE"]))

    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": errors_detail(exc.errors())}, status_code=422)

    return app
