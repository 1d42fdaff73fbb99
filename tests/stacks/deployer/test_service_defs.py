"""TOML service definition files: parsing, component mapping, one clear error per bad file."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacks.deployer.service_defs import DefinitionError, load_definition

GOOD = """
name = "shop"
[env]
MODE = "demo"
[components.worker]
image = "localhost/shop-worker:1.4"
replicas = 2
[components.web]
image = "localhost/shop:1.4"
health_path = "/healthz"
[components.web.env]
MODE = "web"
GREETING = "hi"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "svc.toml"
    path.write_text(text)
    return path


def test_components_become_services(tmp_path: Path) -> None:
    specs = load_definition(write(tmp_path, GOOD)).specs()
    assert [(s.name, s.image, s.replicas) for s in specs] == [
        ("shop", "localhost/shop:1.4", 1),
        ("shop-worker", "localhost/shop-worker:1.4", 2),
    ]
    assert specs[0].env == {"MODE": "web", "GREETING": "hi"}  # component wins over shared
    assert specs[1].env == {"MODE": "demo"}
    assert specs[0].health_path == "/healthz"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name = 'shop'\n[components.web\n", "not valid TOML"),
        ("name = 'Shop'\n[components.web]\nimage = 'a:1'\n", "name: must be a DNS label"),
        ("name = 'shop'\n", "components: Field required"),
        ("name = 'shop'\n[components.web]\nimage = 'a:latest'\n", "':latest' is refused"),
        ("name = 'shop'\n[components.web]\nimage = 'a'\n", "must pin an explicit tag"),
        ("name = 'shop'\n[components.web]\nimage = 'a:1'\nports = 1\n", "Extra inputs"),
        ("name = 'shop'\n[components.Web]\nimage = 'a:1'\n", "components.Web.[key]"),
        ("name = 'shop'\n[components.web]\nimage = 'a:1'\nport = 0\n", "port: Input should be"),
        (f"name = '{'a' * 60}'\n[components.worker]\nimage = 'a:1'\n", "name: String should"),
    ],
)
def test_bad_definition_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DefinitionError) as exc:
        load_definition(path)
    assert str(exc.value).startswith(f"{path}: ")
    assert message in str(exc.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="cannot read"):
        load_definition(tmp_path / "nope.toml")
