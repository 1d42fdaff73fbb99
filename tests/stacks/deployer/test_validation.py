"""Bad input: each case gets a 4xx whose detail names what is wrong, and nothing is created."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.stacks.deployer.conftest import EXAMPLE, Api, running_api

pytestmark = [pytest.mark.podman]

GOOD: dict[str, Any] = {"name": "web", "image": EXAMPLE, "health_path": "/healthz"}


@pytest.fixture(scope="module")
def shared_api(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    # Nothing in this module may create anything, so one store for all cases is enough.
    tmp = tmp_path_factory.mktemp("validation")
    with running_api(f"sqlite:///{tmp / 'store.db'}", tmp) as api:
        yield api


CASES: list[tuple[str, Any, int, str]] = [
    ("upper-case name", {**GOOD, "name": "Web"}, 422, "name: must be a DNS label"),
    ("name with underscore", {**GOOD, "name": "my_app"}, 422, "name: must be a DNS label"),
    ("name ending in dash", {**GOOD, "name": "web-"}, 422, "name: must be a DNS label"),
    ("name too long", {**GOOD, "name": "a" * 64}, 422, "name: String should have at most 63"),
    ("empty name", {**GOOD, "name": ""}, 422, "name: String should have at least 1"),
    ("latest tag", {**GOOD, "image": "nginx:latest"}, 422, "image: ':latest' is refused"),
    ("untagged image", {**GOOD, "image": "nginx"}, 422, "image: must pin an explicit tag"),
    (
        "untagged image with registry port",
        {**GOOD, "image": "localhost:5000/app"},
        422,
        "image: must pin an explicit tag",
    ),
    ("bad digest", {**GOOD, "image": "app@sha256:xyz"}, 422, "image: digest must be sha256:"),
    ("upper-case image", {**GOOD, "image": "App:1"}, 422, "image: 'App' is not a valid image"),
    ("port zero", {**GOOD, "port": 0}, 422, "port: Input should be greater than or equal to 1"),
    ("port too big", {**GOOD, "port": 70000}, 422, "port: Input should be less than or equal"),
    ("port as string", {**GOOD, "port": "8080"}, 422, "port: Input should be a valid integer"),
    (
        "huge env value",
        {**GOOD, "env": {"BIG": "x" * 5000}},
        422,
        "env: value of BIG is larger than 4096 bytes",
    ),
    (
        "too many env vars",
        {**GOOD, "env": {f"V{i}": "1" for i in range(101)}},
        422,
        "env: at most 100 variables",
    ),
    ("bad env name", {**GOOD, "env": {"1BAD": "x"}}, 422, "env: '1BAD' is not a valid variable"),
    ("reserved PORT env", {**GOOD, "env": {"PORT": "1"}}, 422, "env: PORT is reserved"),
    ("env value not a string", {**GOOD, "env": {"A": 1}}, 422, "env.A: Input should be a valid"),
    ("zero replicas", {**GOOD, "replicas": 0}, 422, "replicas: Input should be greater than"),
    ("too many replicas", {**GOOD, "replicas": 11}, 422, "replicas: Input should be less than"),
    ("tiny cpu", {**GOOD, "cpu": 0.001}, 422, "cpu: Input should be greater than or equal"),
    ("tiny memory", {**GOOD, "memory_mb": 4}, 422, "memory_mb: Input should be greater than"),
    ("relative health path", {**GOOD, "health_path": "healthz"}, 422, "health_path: String"),
    ("unknown field", {**GOOD, "volumes": ["/data"]}, 422, "volumes: Extra inputs are not"),
    ("missing image", {"name": "web"}, 422, "image: Field required"),
    ("body is a list", [GOOD], 422, "Input should be a valid dictionary"),
    (
        "duplicate routes",
        {**GOOD, "routes": [{"name": "admin", "port": 9000}, {"name": "admin", "port": 9001}]},
        422,
        "routes: route names must be unique",
    ),
]


@pytest.mark.parametrize(
    ("payload", "status", "detail"),
    [pytest.param(p, s, d, id=i) for i, p, s, d in CASES],
)
def test_bad_create_is_refused_and_creates_nothing(
    shared_api: Api, payload: Any, status: int, detail: str
) -> None:
    response = httpx.post(
        f"{shared_api.url}/v1/services",
        json=payload,
        headers={"Authorization": f"Bearer {shared_api.key}"},
    )
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]
    assert len(response.json()["detail"]) < 400
    assert shared_api.client.list() == []
    assert shared_api.containers() == []


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        pytest.param({}, "missing API key", id="no auth header"),
        pytest.param({"Authorization": "Bearer nonsense"}, "invalid API key", id="garbage key"),
        pytest.param({"Authorization": "Token abc"}, "missing API key", id="wrong scheme"),
    ],
)
def test_create_without_valid_key_is_401(
    shared_api: Api, headers: dict[str, str], detail: str
) -> None:
    response = httpx.post(f"{shared_api.url}/v1/services", json=GOOD, headers=headers)
    assert response.status_code == 401
    assert detail in response.json()["detail"]
    assert shared_api.client.list() == []


def test_not_json_body(shared_api: Api) -> None:
    response = httpx.post(
        f"{shared_api.url}/v1/services",
        content=b"name=web",
        headers={"Authorization": f"Bearer {shared_api.key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert "JSON decode error" in response.json()["detail"]
    assert shared_api.client.list() == []


def test_bad_path_name_and_tail(shared_api: Api) -> None:
    auth = {"Authorization": f"Bearer {shared_api.key}"}
    bad_name = httpx.get(f"{shared_api.url}/v1/services/Bad_Name", headers=auth)
    assert bad_name.status_code == 422 and "name: String should match" in bad_name.json()["detail"]
    bad_tail = httpx.get(f"{shared_api.url}/v1/services/web/logs?tail=-1", headers=auth)
    assert bad_tail.status_code == 422 and bad_tail.json()["detail"].startswith("query.tail:")
