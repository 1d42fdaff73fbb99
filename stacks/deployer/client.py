"""`PierClient`: the deployment API from Python (invoke tasks, tests, other tools)."""

from __future__ import annotations

import builtins
import os
import tomllib
from pathlib import Path
from typing import Any

import httpx

from stacks.deployer.settings import LOCAL_DIR

CONFIG_PATH = Path("~/.config/pier/client.toml")
DEFAULT_TIMEOUT = 120.0  # a create answers only after the first deploy finished


class PierAPIError(RuntimeError):
    """The API refused a request; `detail` is its short explanation."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class ClientConfigError(RuntimeError):
    """No API URL or key was found; the message says where to put them."""


def load_client_config(path: Path | None = None, local_dir: Path | None = None) -> tuple[str, str]:
    """URL and key from $PIER_API_URL/$PIER_API_KEY, else from `~/.config/pier/client.toml`,
    else from what `invoke up` left in `.pier/local/` (`api-url`, `api-key`; $PIER_LOCAL_DIR
    points elsewhere)."""
    local_dir = local_dir or Path(os.environ.get("PIER_LOCAL_DIR", str(LOCAL_DIR)))
    url = os.environ.get("PIER_API_URL", "")
    key = os.environ.get("PIER_API_KEY", "")
    file = (path or CONFIG_PATH).expanduser()
    if (not url or not key) and file.is_file():
        try:
            data = tomllib.loads(file.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ClientConfigError(f"{file}: not valid TOML ({exc})") from exc
        url = url or str(data.get("url", ""))
        key = key or str(data.get("api_key", ""))
    if (not url or not key) and (local_dir / "api-url").is_file():
        url = url or (local_dir / "api-url").read_text().strip()
        if (local_dir / "api-key").is_file():
            key = key or (local_dir / "api-key").read_text().strip()
    if not url or not key:
        raise ClientConfigError(
            "no API URL/key: set PIER_API_URL and PIER_API_KEY, or write url = ... and "
            f"api_key = ... to {file} (create a key with `invoke svc.admin-key`), "
            "or run `invoke up`"
        )
    return url, key


class PierClient:
    def __init__(self, base_url: str, api_key: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
        )

    @classmethod
    def from_config(cls, path: Path | None = None) -> PierClient:
        url, key = load_client_config(path)
        return cls(url, key)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PierClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise PierAPIError(0, f"cannot reach the API at {self._http.base_url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                detail = str(response.json().get("detail", response.text))
            except ValueError:
                detail = response.text
            raise PierAPIError(response.status_code, detail)
        return response.json()

    def whoami(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/v1/whoami")
        return result

    def create(self, spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/v1/services", json=spec)
        return result

    def list(self, *, page_size: int | None = None) -> list[dict[str, Any]]:
        """Every service of the tenant, following the API's pages to the end."""
        services: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = self.list_page(limit=page_size, cursor=cursor)
            services += page["services"]
            cursor = page.get("next_cursor")
            if cursor is None:
                return services

    def list_page(self, *, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """One page: {"services": [...], "next_cursor": name or None}."""
        params: dict[str, Any] = {}
        if limit is not None:
            params["limit"] = limit
        if cursor is not None:
            params["cursor"] = cursor
        result: dict[str, Any] = self._call("GET", "/v1/services", params=params)
        return result

    def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/services/{name}")
        return result

    def deployments(self, name: str) -> builtins.list[dict[str, Any]]:
        result: builtins.list[dict[str, Any]] = self._call(
            "GET", f"/v1/services/{name}/deployments"
        )["deployments"]
        return result

    def logs(self, name: str, tail: int = 100) -> str:
        return str(self._call("GET", f"/v1/services/{name}/logs", params={"tail": tail})["logs"])

    def redeploy(self, name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"json": spec} if spec is not None else {}
        result: dict[str, Any] = self._call("POST", f"/v1/services/{name}/redeploy", **kwargs)
        return result

    def _action(self, name: str, action: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/v1/services/{name}/{action}")
        return result

    def rollback(self, name: str) -> dict[str, Any]:
        return self._action(name, "rollback")

    def stop(self, name: str) -> dict[str, Any]:
        return self._action(name, "stop")

    def start(self, name: str) -> dict[str, Any]:
        return self._action(name, "start")

    def restart(self, name: str) -> dict[str, Any]:
        return self._action(name, "restart")

    def delete(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("DELETE", f"/v1/services/{name}")
        return result

    def deploy(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Create the service, or redeploy it with `spec` when it exists already."""
        try:
            self.get(str(spec["name"]))
        except PierAPIError as exc:
            if exc.status != 404:
                raise
            return self.create(spec)
        return self.redeploy(str(spec["name"]), spec)
