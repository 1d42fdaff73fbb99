"""The MCP endpoint (Streamable HTTP at /mcp): the REST operations as tools, same keys, same tenant.

The transport is stateless and answers in JSON, so any replica can serve any call and every call
carries its own `Authorization` header; the tools authenticate from that header per call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from fastapi import HTTPException
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import ValidationError
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from stacks.deployer.auth import Principal
from stacks.deployer.deploys import ServiceError
from stacks.deployer.deps import UNAUTHORIZED, AppState, authenticate
from stacks.deployer.schemas import (
    DEFAULT_PAGE,
    DeleteOut,
    DeploymentOut,
    LogsOut,
    ServiceList,
    ServiceOut,
    ServiceSpec,
    WhoAmI,
    errors_detail,
)

T = TypeVar("T")


def _principal(state: AppState, authorization: str | None) -> Principal:
    token = None
    if authorization and authorization.lower().startswith("bearer "):
        token = authorization[7:].strip()
    with state.sessions() as session:
        try:
            return authenticate(state, session, token)
        except HTTPException as exc:
            raise ToolError(str(exc.detail)) from exc


def build_mcp(state: AppState) -> MCPServer:
    mcp = MCPServer(
        name="pier-deployer",
        instructions="Deploy and operate container services on pier. Images must pin a tag.",
    )

    async def call(ctx: Context, op: Callable[[Principal], T]) -> T:
        headers = ctx.headers or {}
        principal = await anyio.to_thread.run_sync(_principal, state, headers.get("authorization"))
        try:
            return await anyio.to_thread.run_sync(op, principal)
        except ServiceError as exc:
            raise ToolError(exc.detail) from exc

    @mcp.tool()
    async def whoami(ctx: Context) -> WhoAmI:
        """Which tenant and API key this connection acts as."""

        def op(p: Principal) -> WhoAmI:
            return WhoAmI(tenant=p.tenant, key_name=p.key_name, key_prefix=p.key_prefix)

        return await call(ctx, op)

    @mcp.tool()
    async def create_service(
        ctx: Context,
        name: str,
        image: str,
        port: int = 8080,
        env: dict[str, str] | None = None,
        replicas: int = 1,
        cpu: float | None = None,
        memory_mb: int | None = None,
        health_path: str = "/",
    ) -> ServiceOut:
        """Create a service from an image with a pinned tag and wait until it is live or failed."""
        raw: dict[str, Any] = {
            "name": name,
            "image": image,
            "port": port,
            "env": env or {},
            "replicas": replicas,
            "cpu": cpu,
            "memory_mb": memory_mb,
            "health_path": health_path,
        }
        try:
            spec = ServiceSpec.model_validate(raw)
        except ValidationError as exc:
            raise ToolError(errors_detail(exc.errors())) from exc
        return await call(ctx, lambda p: state.deployer.create(p, spec))

    @mcp.tool()
    async def list_services(
        ctx: Context, limit: int = DEFAULT_PAGE, cursor: str | None = None
    ) -> ServiceList:
        """This tenant's services (status, URL) by name, `limit` (1-500) per page; pass the
        page's `next_cursor` as `cursor` for the next one (null on the last page)."""
        return await call(ctx, lambda p: state.deployer.list_page(p, limit=limit, cursor=cursor))

    @mcp.tool()
    async def get_service(ctx: Context, name: str) -> ServiceOut:
        """One service: status, URL, current and previous deployment."""
        return await call(ctx, lambda p: state.deployer.get(p, name))

    @mcp.tool()
    async def redeploy_service(
        ctx: Context, name: str, image: str | None = None, env: dict[str, str] | None = None
    ) -> ServiceOut:
        """Deploy the service again, optionally with a new image and/or env; the running
        deployment keeps serving until the new one is healthy."""

        def op(p: Principal) -> ServiceOut:
            spec = None
            if image is not None or env is not None:
                current = state.deployer.get(p, name).spec.model_dump()
                changes = {k: v for k, v in (("image", image), ("env", env)) if v is not None}
                try:
                    spec = ServiceSpec.model_validate({**current, **changes})
                except ValidationError as exc:
                    raise ServiceError(422, errors_detail(exc.errors())) from exc
            return state.deployer.redeploy(p, name, spec)

        return await call(ctx, op)

    @mcp.tool()
    async def rollback_service(ctx: Context, name: str) -> ServiceOut:
        """Go back to the previous healthy deployment."""
        return await call(ctx, lambda p: state.deployer.rollback(p, name))

    @mcp.tool()
    async def stop_service(ctx: Context, name: str) -> ServiceOut:
        """Stop the service's containers (kept, so start_service brings them back)."""
        return await call(ctx, lambda p: state.deployer.stop(p, name))

    @mcp.tool()
    async def start_service(ctx: Context, name: str) -> ServiceOut:
        """Start a stopped service and wait until it is healthy."""
        return await call(ctx, lambda p: state.deployer.start(p, name))

    @mcp.tool()
    async def restart_service(ctx: Context, name: str) -> ServiceOut:
        """Stop and start the service."""
        return await call(ctx, lambda p: state.deployer.restart(p, name))

    @mcp.tool()
    async def delete_service(ctx: Context, name: str) -> DeleteOut:
        """Remove the service and its containers."""
        return await call(ctx, lambda p: state.deployer.delete(p, name))

    @mcp.tool()
    async def service_logs(ctx: Context, name: str, tail: int = 100) -> LogsOut:
        """The last `tail` lines of the service's output."""
        return await call(ctx, lambda p: state.deployer.logs(p, name, tail))

    @mcp.tool()
    async def service_deployments(ctx: Context, name: str) -> list[DeploymentOut]:
        """The service's deployment history, newest first."""
        return await call(ctx, lambda p: state.deployer.deployments(p, name))

    return mcp


class McpEndpoint:
    """ASGI app for /mcp: refuses calls without a valid key before the MCP transport sees them."""

    def __init__(self, state: AppState, manager: StreamableHTTPSessionManager) -> None:
        self.state = state
        self.inner = StreamableHTTPASGIApp(manager)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        try:
            await anyio.to_thread.run_sync(_principal, self.state, headers.get("authorization"))
        except ToolError as exc:
            response = JSONResponse({"detail": str(exc)}, status_code=401, headers=UNAUTHORIZED)
            await response(scope, receive, send)
            return
        await self.inner(scope, receive, send)


def mcp_app(state: AppState) -> tuple[McpEndpoint, StreamableHTTPSessionManager]:
    mcp = build_mcp(state)
    mcp.streamable_http_app(
        stateless_http=True,
        json_response=True,
        # Keys travel in a header, never as ambient browser credentials, so DNS rebinding
        # gains an attacker nothing; the API is reached under many host names in the cluster.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    return McpEndpoint(state, mcp.session_manager), mcp.session_manager
