"""Listing is paged (limit + cursor) on REST, MCP, the client and `svc.list`; bad values get 422.

Listing reads only the store, so the services are written straight into it (after the API has
reconciled on start, so no container is ever started for them).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from invoke.context import Context
from invoke.exceptions import Exit

from stacks.deployer.db import make_engine, session_factory, session_scope
from stacks.deployer.deploys import ServiceError, check_page
from stacks.deployer.models import Service, ServiceStatus
from stacks.tasks import svc
from tests.stacks.deployer.conftest import EXAMPLE, Api, running_api
from tests.stacks.deployer.test_mcp import call, mcp_client

pytestmark = [pytest.mark.podman]
NAMES = [f"svc-{i:03d}" for i in range(105)]


def seed(database_url: str, tenant: str, names: list[str], status: str = "failed") -> None:
    engine = make_engine(database_url)
    try:
        with session_scope(session_factory(engine)) as session:
            for name in names:
                spec = {"name": name, "image": EXAMPLE, "health_path": "/healthz"}
                session.add(Service(tenant=tenant, name=name, spec=spec, status=status))
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def paged_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("paging")
    with running_api(f"sqlite:///{tmp / 'store.db'}", tmp) as api:
        seed(api.database_url, "acme", NAMES[::-1])  # stored out of order on purpose
        seed(api.database_url, "other", ["svc-000a", "zzz"])
        seed(api.database_url, "acme", ["svc-050x"], status=ServiceStatus.DELETING)
        yield api


def get(api: Api, **params: Any) -> httpx.Response:
    auth = {"Authorization": f"Bearer {api.key}"}
    return httpx.get(f"{api.url}/v1/services", params=params, headers=auth, timeout=30)


def test_rest_pages_by_name_until_next_cursor_is_null(paged_api: Api) -> None:
    first = get(paged_api).json()
    assert [s["name"] for s in first["services"]] == NAMES[:100]  # default page: 100
    assert first["next_cursor"] == NAMES[99]
    rest = get(paged_api, cursor=first["next_cursor"]).json()
    assert [s["name"] for s in rest["services"]] == NAMES[100:]
    assert rest["next_cursor"] is None

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = get(paged_api, limit=40, **({"cursor": cursor} if cursor else {})).json()
        assert len(page["services"]) <= 40
        seen += [s["name"] for s in page["services"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # Every service once, in order; never another tenant's, never one being deleted.
    assert seen == NAMES and pages == 3
    whole = get(paged_api, limit=500).json()
    assert len(whole["services"]) == 105 and whole["next_cursor"] is None
    # An exact fit says there is no next page, not an empty one.
    assert get(paged_api, limit=5, cursor=NAMES[99]).json()["next_cursor"] is None
    # A cursor past the end (or naming a deleted service) is just a position.
    assert get(paged_api, cursor="zzz").json() == {"services": [], "next_cursor": None}
    assert [s["name"] for s in get(paged_api, limit=1, cursor="svc-050").json()["services"]] == [
        "svc-051"
    ]


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"limit": 0}, "query.limit: Input should be greater than or equal to 1"),
        ({"limit": -5}, "query.limit: Input should be greater than or equal to 1"),
        ({"limit": 501}, "query.limit: Input should be less than or equal to 500"),
        ({"limit": "ten"}, "query.limit: Input should be a valid integer"),
        ({"limit": "1.5"}, "query.limit: Input should be a valid integer"),
        ({"cursor": "Bad_Name"}, "query.cursor: String should match pattern"),
        ({"cursor": "a" * 64}, "query.cursor: String should have at most 63 characters"),
    ],
)
def test_rest_refuses_bad_page_values(paged_api: Api, params: dict[str, Any], detail: str) -> None:
    response = get(paged_api, **params)
    assert response.status_code == 422
    assert response.json()["detail"].startswith(detail), response.json()


def test_openapi_documents_the_page_parameters(paged_api: Api) -> None:
    spec = httpx.get(f"{paged_api.url}/openapi.json").json()
    params = {p["name"]: p for p in spec["paths"]["/v1/services"]["get"]["parameters"]}
    assert params["limit"]["schema"]["maximum"] == 500
    assert params["limit"]["schema"]["default"] == 100
    assert "next_cursor" in params["cursor"]["description"]
    assert "next_cursor" in spec["components"]["schemas"]["ServiceList"]["properties"]


def test_client_pages_through_everything(paged_api: Api) -> None:
    assert [s["name"] for s in paged_api.client.list(page_size=7)] == NAMES
    assert [s["name"] for s in paged_api.client.list()] == NAMES
    page = paged_api.client.list_page(limit=2, cursor="svc-010")
    assert [s["name"] for s in page["services"]] == ["svc-011", "svc-012"]
    assert page["next_cursor"] == "svc-012"
    assert [s["name"] for s in paged_api.other.list(page_size=1)] == ["svc-000a", "zzz"]


def test_mcp_list_services_pages_and_refuses_bad_values(paged_api: Api) -> None:
    async def scenario() -> None:
        async with mcp_client(paged_api, paged_api.key) as client:
            err, page = await call(client, "list_services")
            assert not err and len(page["services"]) == 100
            assert page["next_cursor"] == NAMES[99]
            err, page = await call(client, "list_services", limit=3, cursor=NAMES[101])
            assert not err and [s["name"] for s in page["services"]] == NAMES[102:]
            assert page["next_cursor"] is None
            err, text = await call(client, "list_services", limit=0)
            assert err and "limit must be a whole number from 1 to 500, got 0" in text
            err, text = await call(client, "list_services", limit=501)
            assert err and "limit must be a whole number from 1 to 500, got 501" in text
            err, text = await call(client, "list_services", cursor="Not A Name")
            assert err and "cursor must be a service name" in text

    anyio.run(scenario)


def test_svc_list_task_shows_one_page_or_all(
    paged_api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PIER_API_URL", paged_api.url)
    monkeypatch.setenv("PIER_API_KEY", paged_api.key)
    monkeypatch.setattr(svc.console, "width", 200)
    svc.list_(Context(), limit="3", cursor="svc-100")
    out = capsys.readouterr().out
    assert "svc-101" in out and "svc-103" in out and "svc-104" not in out
    assert "more: invoke svc.list --limit 3 --cursor svc-103" in out
    svc.list_(Context())
    out = capsys.readouterr().out
    assert all(name in out for name in NAMES) and "more:" not in out
    with pytest.raises(Exit, match="--limit 'x' must be a whole number from 1 to 500"):
        svc.list_(Context(), limit="x")
    with pytest.raises(Exit, match="the API answered 422: query.limit"):
        svc.list_(Context(), limit="0")


def test_in_process_callers_get_the_same_checks() -> None:
    for limit, cursor in ((0, None), (501, None), (True, None), (10, "UPPER")):
        with pytest.raises(ServiceError) as exc:
            check_page(limit, cursor)
        assert exc.value.status == 422
    check_page(500, "svc-001")
