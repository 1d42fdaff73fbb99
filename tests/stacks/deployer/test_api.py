"""Every REST endpoint over real HTTP with real podman containers, including error paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from stacks.deployer.client import PierAPIError, PierClient
from tests.stacks.deployer.conftest import (
    BROKEN,
    EXAMPLE,
    Api,
    at_once,
    new_pg_database,
    running_api,
)

pytestmark = [pytest.mark.podman, pytest.mark.slow]


def web(name: str = "web", greeting: str = "v1", **kw: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": EXAMPLE,
        "health_path": "/healthz",
        "env": {"GREETING": greeting},
        **kw,
    }


def body(url: str) -> str:
    return httpx.get(url, timeout=5).text.strip()


def error(call: Any, *args: Any) -> PierAPIError:
    with pytest.raises(PierAPIError) as exc:
        call(*args)
    return exc.value


def test_whoami_and_auth(api: Api) -> None:
    assert api.client.whoami() == {
        "tenant": "acme",
        "key_name": "admin",
        "key_prefix": api.key.split("_")[1],
    }
    missing = httpx.get(f"{api.url}/v1/whoami")
    assert missing.status_code == 401
    assert missing.json() == {"detail": "missing API key: send 'Authorization: Bearer <key>'"}
    assert missing.headers["www-authenticate"] == "Bearer"
    forged = api.key[:-4] + "AAAA"
    bad = httpx.get(f"{api.url}/v1/whoami", headers={"Authorization": f"Bearer {forged}"})
    assert (bad.status_code, bad.json()) == (401, {"detail": "invalid API key"})
    basic = httpx.get(f"{api.url}/v1/services", auth=("acme", api.key))
    assert basic.status_code == 401


def test_create_get_list_logs_deployments(api: Api) -> None:
    created = api.client.create(web())
    assert created["status"] == "live"
    assert created["current_deployment"]["seq"] == 1
    assert created["previous_deployment"] is None
    assert body(created["url"]) == "v1"
    got = api.client.get("web")
    assert got["url"] == created["url"] and got["spec"]["env"] == {"GREETING": "v1"}
    assert [s["name"] for s in api.client.list()] == ["web"]
    history = api.client.deployments("web")
    assert [(d["seq"], d["status"], d["reason"]) for d in history] == [(1, "live", "create")]
    assert "serving on port" in api.client.logs("web", tail=20)
    assert api.client.logs("web", tail=0) == ""
    assert len(api.containers()) == 1


def test_redeploy_rollback_and_failed_health_check(api: Api) -> None:
    first = api.client.create(web())
    url = first["url"]
    second = api.client.redeploy("web", web(greeting="v2"))
    assert second["status"] == "live" and body(url) == "v2"
    assert second["previous_deployment"]["id"] == first["current_deployment"]["id"]
    assert len(api.containers()) == 1  # the superseded container is gone

    # A broken image never gets healthy: v2 keeps serving, the new deployment is failed with logs.
    after = api.client.redeploy("web", {**web(), "image": BROKEN})
    assert after["current_deployment"]["id"] == second["current_deployment"]["id"]
    assert body(url) == "v2"
    failed = api.client.deployments("web")[0]
    assert failed["status"] == "failed" and failed["seq"] == 3
    assert "broken: DATABASE_URL is not set" in failed["logs"]

    back = api.client.rollback("web")
    assert body(url) == "v1" and back["current_deployment"]["reason"] == "rollback"
    assert back["spec"]["env"] == {"GREETING": "v1"}
    plain = api.client.redeploy("web")
    assert plain["current_deployment"]["seq"] == 5 and body(url) == "v1"
    assert [d["status"] for d in api.client.deployments("web")] == [
        "live",
        "superseded",
        "failed",
        "superseded",
        "superseded",
    ]
    mismatch = error(api.client.redeploy, "web", web(name="other"))
    assert (mismatch.status, mismatch.detail) == (
        422,
        "body name 'other' does not match the path 'web'",
    )


def test_rollback_without_previous_is_409(api: Api) -> None:
    api.client.create(web())
    exc = error(api.client.rollback, "web")
    assert exc.status == 409
    assert exc.detail == "service 'web' has no previous healthy deployment to roll back to"


def test_failed_first_deploy(api: Api) -> None:
    out = api.client.create({**web(), "image": BROKEN})
    assert out["status"] == "failed" and out["url"] is None and out["current_deployment"] is None
    assert "broken: DATABASE_URL is not set" in api.client.logs("web")
    assert api.containers() == []
    for call in (api.client.stop, api.client.start, api.client.restart):
        exc = error(call, "web")
        assert exc.status == 409 and "no live deployment" in exc.detail
    fixed = api.client.redeploy("web", web())
    assert fixed["status"] == "live" and body(fixed["url"]) == "v1"


def test_stop_start_restart(api: Api) -> None:
    url = api.client.create(web())["url"]
    stopped = api.client.stop("web")
    assert (stopped["status"], stopped["desired_state"], stopped["url"]) == (
        "stopped",
        "stopped",
        None,
    )
    with pytest.raises(httpx.HTTPError):
        httpx.get(url, timeout=2).raise_for_status()
    started = api.client.start("web")
    assert started["status"] == "live" and body(started["url"]) == "v1"
    restarted = api.client.restart("web")
    assert restarted["status"] == "live" and body(restarted["url"]) == "v1"
    assert len(api.containers()) == 1


def test_delete(api: Api) -> None:
    api.client.create(web())
    assert api.client.delete("web") == {"name": "web", "deleted": True}
    assert api.containers() == []
    assert error(api.client.get, "web").status == 404
    assert error(api.client.delete, "web").status == 404
    # The name is free again.
    assert api.client.create(web())["status"] == "live"


def test_unknown_service_is_404_everywhere(api: Api) -> None:
    c = api.client
    for call in (
        c.get,
        c.deployments,
        c.logs,
        c.redeploy,
        c.rollback,
        c.stop,
        c.start,
        c.restart,
        c.delete,
    ):
        exc = error(call, "nope")
        assert (exc.status, exc.detail) == (404, "service 'nope' not found"), call


def test_cross_tenant_access_is_404(api: Api) -> None:
    api.client.create(web())
    assert api.other.list() == []
    o = api.other
    for call in (o.get, o.deployments, o.logs, o.redeploy, o.rollback, o.stop, o.start, o.delete):
        exc = error(call, "web")
        assert (exc.status, exc.detail) == (404, "service 'web' not found"), call
    assert api.client.get("web")["status"] == "live"
    assert len(api.containers()) == 1


def test_concurrent_create_same_name_one_wins(api: Api) -> None:
    def create() -> None:
        with PierClient(api.url, api.key) as client:
            client.create(web())

    refused = (409, "service 'web' already exists")
    assert at_once(create, 5, ok=201) == [(201, "")] + [refused] * 4
    assert len(api.client.list()) == 1 and len(api.containers()) == 1


def test_busy_service_answers_409(api: Api) -> None:
    api.client.create(web())

    def redeploy() -> None:
        with PierClient(api.url, api.key) as client:
            client.redeploy("web", web(greeting="v2"))

    statuses = [status for status, _ in at_once(redeploy, 3, ok=200)]
    # At least one redeploy ran; any that overlapped it were refused, not queued.
    assert 200 in statuses and set(statuses) <= {200, 409}
    history = api.client.deployments("web")
    assert len(history) == 1 + statuses.count(200)


def test_openapi_documents_the_api(api: Api) -> None:
    spec = httpx.get(f"{api.url}/openapi.json").json()
    paths = set(spec["paths"])
    assert {
        "/v1/services",
        "/v1/services/{name}",
        "/v1/services/{name}/redeploy",
        "/v1/services/{name}/rollback",
        "/v1/services/{name}/stop",
        "/v1/services/{name}/start",
        "/v1/services/{name}/restart",
        "/v1/services/{name}/logs",
        "/v1/services/{name}/deployments",
        "/v1/whoami",
    } <= paths


def test_api_on_postgresql(images: dict[str, str], postgres: str, tmp_path: Path) -> None:
    """The same API with its store on PostgreSQL (the cluster setup) instead of SQLite."""
    with running_api(new_pg_database(postgres), tmp_path) as pg_api:

        def create() -> None:
            with PierClient(pg_api.url, pg_api.key) as client:
                client.create(web())

        statuses = [status for status, _ in at_once(create, 3, ok=201)]
        assert statuses == [201, 409, 409]
        url = pg_api.client.get("web")["url"]
        pg_api.client.redeploy("web", web(greeting="v2"))
        assert body(url) == "v2"
        assert pg_api.client.rollback("web")["spec"]["env"] == {"GREETING": "v1"}
        assert [d["seq"] for d in pg_api.client.deployments("web")] == [3, 2, 1]
        assert pg_api.other.list() == []
        assert pg_api.client.delete("web")["deleted"] is True
        assert pg_api.containers() == []
