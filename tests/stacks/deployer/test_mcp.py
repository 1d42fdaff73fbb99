"""The MCP tools over Streamable HTTP with the official SDK client, real containers behind them."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.stacks.deployer.conftest import BROKEN, EXAMPLE, Api

pytestmark = [pytest.mark.podman, pytest.mark.slow]

TOOLS = {
    "create_service",
    "list_services",
    "get_service",
    "redeploy_service",
    "rollback_service",
    "delete_service",
    "service_logs",
    "service_deployments",
    "stop_service",
    "start_service",
    "restart_service",
    "whoami",
}


def mcp_client(api: Api, key: str) -> Client:
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
    return Client(streamable_http_client(f"{api.url}/mcp", http_client=http))


async def call(client: Client, tool: str, **args: Any) -> tuple[bool, Any]:
    """(is_error, structured result or the error text)."""
    result = await client.call_tool(tool, args)
    if result.is_error:
        return True, " ".join(getattr(c, "text", "") for c in result.content)
    return False, result.structured_content


def test_tools_end_to_end(api: Api) -> None:
    async def scenario() -> None:
        async with mcp_client(api, api.key) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert tools == TOOLS

            err, me = await call(client, "whoami")
            assert not err and me["tenant"] == "acme" and me["key_name"] == "admin"

            err, svc = await call(
                client,
                "create_service",
                name="web",
                image=EXAMPLE,
                env={"GREETING": "mcp-v1"},
                health_path="/healthz",
            )
            assert not err and svc["status"] == "live"
            assert httpx.get(svc["url"]).text.strip() == "mcp-v1"

            err, listed = await call(client, "list_services")
            assert not err and [s["name"] for s in listed["services"]] == ["web"]
            err, got = await call(client, "get_service", name="web")
            assert not err and got["current_deployment"]["seq"] == 1

            err, again = await call(
                client, "redeploy_service", name="web", env={"GREETING": "mcp-v2"}
            )
            assert not err and again["current_deployment"]["seq"] == 2
            assert httpx.get(svc["url"]).text.strip() == "mcp-v2"
            err, back = await call(client, "rollback_service", name="web")
            assert not err and back["current_deployment"]["reason"] == "rollback"
            assert httpx.get(svc["url"]).text.strip() == "mcp-v1"
            err, history = await call(client, "service_deployments", name="web")
            assert not err and [d["seq"] for d in history["result"]] == [3, 2, 1]

            err, stopped = await call(client, "stop_service", name="web")
            assert not err and stopped["status"] == "stopped"
            err, started = await call(client, "start_service", name="web")
            assert not err and started["status"] == "live"
            err, restarted = await call(client, "restart_service", name="web")
            assert not err and restarted["status"] == "live"
            assert httpx.get(restarted["url"]).text.strip() == "mcp-v1"

            err, logs = await call(client, "service_logs", name="web", tail=5)
            assert not err and "serving on port" in logs["logs"]

            err, gone = await call(client, "delete_service", name="web")
            assert not err and gone == {"name": "web", "deleted": True}
            assert api.containers() == []

    anyio.run(scenario)


def test_tool_errors(api: Api) -> None:
    async def scenario() -> None:
        async with mcp_client(api, api.key) as client:
            for tool in (
                "get_service",
                "redeploy_service",
                "stop_service",
                "start_service",
                "restart_service",
                "rollback_service",
                "delete_service",
                "service_logs",
                "service_deployments",
            ):
                err, text = await call(client, tool, name="ghost")
                assert err and "service 'ghost' not found" in text, tool
            err, text = await call(client, "create_service", name="web", image="busybox:latest")
            assert err and "image: ':latest' is refused" in text
            err, text = await call(client, "create_service", name="Web!", image=EXAMPLE)
            assert err and "name: must be a DNS label" in text
            err, text = await call(client, "redeploy_service", name="bad", image="x:latest")
            assert err and "service 'bad' not found" in text
            err, text = await call(client, "service_logs", name="web", tail=-1)
            assert err and "tail: must be between 0 and 10000" in text
            err, failed = await call(
                client, "create_service", name="bad", image=BROKEN, health_path="/healthz"
            )
            assert not err and failed["status"] == "failed"
            err, text = await call(client, "rollback_service", name="bad")
            assert err and "no previous healthy deployment" in text
            err, text = await call(client, "stop_service", name="bad")
            assert err and "has no live deployment yet" in text
            err, text = await call(client, "redeploy_service", name="bad", image="x:latest")
            assert err and "image: ':latest' is refused" in text
            err, listed = await call(client, "list_services")
            assert [s["name"] for s in listed["services"]] == ["bad"]

    anyio.run(scenario)


def test_mcp_tenant_isolation(api: Api) -> None:
    api.client.create({"name": "web", "image": EXAMPLE, "health_path": "/healthz"})

    async def scenario() -> None:
        async with mcp_client(api, api.other_key) as client:
            err, me = await call(client, "whoami")
            assert not err and me["tenant"] == "other"
            err, listed = await call(client, "list_services")
            assert not err and listed["services"] == []
            for tool in ("get_service", "delete_service", "redeploy_service"):
                err, text = await call(client, tool, name="web")
                assert err and "service 'web' not found" in text

    anyio.run(scenario)
    assert api.client.get("web")["status"] == "live"


@pytest.mark.parametrize("key", [None, "pier_aaaaaaaaaaaa_" + "x" * 43])
def test_mcp_refuses_missing_or_bad_key(api: Api, key: str | None) -> None:
    headers = {"Accept": "application/json, text/event-stream"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/list",
        "params": {},
    }
    response = httpx.post(f"{api.url}/mcp", json=init, headers=headers)
    assert response.status_code == 401
    assert response.json()["detail"] in {
        "missing API key: send 'Authorization: Bearer <key>'",
        "invalid API key",
    }

    async def scenario() -> None:
        async with mcp_client(api, key or "") as client:
            await client.list_tools()

    with pytest.raises(Exception):  # noqa: B017 - the SDK wraps the HTTP 401 in its own errors
        anyio.run(scenario)
