"""Property-based requests generated from the OpenAPI spec: the API never answers 5xx.

Runs against a real API (uvicorn + podman driver) so every layer a request touches is the
real one. Examples per operation are bounded to keep the run near a minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.stacks.deployer.conftest import EXAMPLE, Api, running_api

pytestmark = [pytest.mark.podman, pytest.mark.slow]


@pytest.fixture(scope="module")
def fuzz_api(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("fuzz")
    with running_api(f"sqlite:///{tmp / 'store.db'}", tmp) as api:
        # A real service, so generated names sometimes hit one that exists.
        api.client.create({"name": "web", "image": EXAMPLE, "health_path": "/healthz"})
        yield api


def test_no_server_errors(fuzz_api: Api) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_api.url}/openapi.json")
    failures: dict[str, str] = {}
    operations = 0
    for result in schema.get_all_operations():
        if isinstance(result, Err):  # an operation schemathesis cannot read is a failure too
            failures[f"unreadable operation {operations}"] = str(result.err())
            continue
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=50,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: schemathesis.Case[Any]) -> None:
            # All of schemathesis' response checks (no 5xx, documented status codes,
            # schema-conformant bodies, unauthenticated variants refused) except "schema-valid
            # input must be accepted": limits across fields (total env size, reserved PORT_*
            # names, unique route names) cannot be written in JSON Schema, and refusing them
            # with a 422 is the point.
            case.call_and_validate(
                base_url=fuzz_api.url,
                headers={"Authorization": f"Bearer {fuzz_api.key}"},
                excluded_checks=[positive_data_acceptance],
                timeout=60,
            )

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures[operation.label] = str(exc)[:2000]
    assert operations >= 11
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
