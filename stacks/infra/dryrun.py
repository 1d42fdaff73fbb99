"""Evaluate the real infra program under Pulumi mocks: no CLI, no credentials, no network.

`invoke plan`, the tests and the benchmark all use `dry_run`. The mocks answer like the providers
would (numeric Hetzner ids, a public IPv4 per server) and a recording monitor keeps every
registration with its parent and which inputs were secret, so policies can be checked over the
whole resource graph.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc

from stacks.infra import program
from stacks.infra.config import PROJECT, InfraConfig, validate
from stacks.infra.tokens import ProviderTokens, placeholders

# RFC 2544 benchmarking range: plausible public-looking addresses that are never routed.
MOCK_PUBLIC_RANGE = IPv4Network("198.18.0.0/15")
SERVER = "hcloud:index/server:Server"


@dataclass(frozen=True)
class Registered:
    urn: str
    type: str
    name: str
    parent: str
    inputs: dict[str, Any]
    secret_inputs: frozenset[str]
    outputs: dict[str, Any]
    # `<provider urn>::<provider id>` for custom resources; "" for components and providers.
    provider: str = ""

    @property
    def group(self) -> str:
        """The name of the component this resource belongs to ("" at the top level)."""
        return self.parent.rsplit("::", 1)[-1] if "$pier:infra:" in self.parent else ""


@dataclass
class DryRun:
    env: str
    resources: list[Registered] = field(default_factory=list)
    exports: dict[str, Any] = field(default_factory=dict)
    secret_exports: dict[str, bool] = field(default_factory=dict)

    def of_type(self, type_token: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_token]

    def custom(self) -> list[Registered]:
        """Real cloud resources (not components, not providers)."""
        return [
            r
            for r in self.resources
            if not r.type.startswith("pier:") and not r.type.startswith("pulumi:providers:")
        ]


class InfraMocks(pulumi_mocks.Mocks):
    """Provider stand-ins returning what the real providers would compute on create."""

    def __init__(self) -> None:
        self._ids = itertools.count(1001)
        self._taken: set[int] = set()

    def _public_ip(self, name: str) -> str:
        # Derived from the name (not registration order, which is concurrent) so a plan prints
        # the same addresses every time; probing past collisions keeps them unique.
        size = MOCK_PUBLIC_RANGE.num_addresses - 2
        slot = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % size
        while slot in self._taken:
            slot = (slot + 1) % size
        self._taken.add(slot)
        return str(MOCK_PUBLIC_RANGE.network_address + 1 + slot)

    def new_resource(
        self, args: pulumi_mocks.MockResourceArgs
    ) -> tuple[str | None, dict[Any, Any]]:
        state = dict(args.inputs)
        rid = str(next(self._ids))
        if args.typ == SERVER:
            state["ipv4_address"] = self._public_ip(args.name)
            state["status"] = "running"
        elif args.typ.startswith("cloudflare:"):
            rid = f"cf{rid}"
        return rid, state

    def call(
        self, args: pulumi_mocks.MockCallArgs
    ) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        return {}, None


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """Keeps each registration's parent and secret inputs, which the plain mock forgets."""

    def __init__(self, mocks: InfraMocks) -> None:
        super().__init__(mocks)
        self.registered: list[Registered] = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type == "pulumi:pulumi:Stack":
            return response
        inputs = rpc.deserialize_properties(request.object)
        secret = frozenset(k for k, v in inputs.items() if rpc.is_rpc_secret(v))
        plain = {k: rpc.unwrap_rpc_secret(v) for k, v in inputs.items()}
        state = self.resources[response.urn].state
        self.registered.append(
            Registered(
                urn=response.urn,
                type=request.type,
                name=request.name,
                parent=request.parent,
                inputs=plain,
                secret_inputs=secret,
                outputs=dict(state) if state else {},
                provider=request.provider,
            )
        )
        return response


def ensure_event_loop() -> None:
    """Give this thread an open event loop for Pulumi's runtime to schedule on.

    Pulumi's SDK creates futures on the thread's current loop; an `asyncio.run()` earlier in
    the same process (an HTTP client, an MCP session, another test) leaves none behind.
    """
    policy = asyncio.get_event_loop_policy()
    try:
        loop = policy.get_event_loop()
    except RuntimeError:
        loop = None
    if loop is None or loop.is_closed():
        policy.set_event_loop(policy.new_event_loop())


def dry_run(
    cfg: InfraConfig | Mapping[str, Any],
    tokens: ProviderTokens | None = None,
    *,
    monitor: RecordingMonitor | None = None,
) -> DryRun:
    """Run the program under mocks and return every registration and resolved export.

    Raw config (a mapping) is validated inside the run, exactly where `__main__` does it, so a
    test can show that a bad value stops the program before any resource is registered.
    """
    stack = cfg.env if isinstance(cfg, InfraConfig) else str(cfg.get("env", "dryrun"))
    result = DryRun(env=stack)
    ensure_event_loop()
    monitor = monitor or RecordingMonitor(InfraMocks())
    pulumi.runtime.set_mocks(
        monitor.mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor
    )

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def evaluate() -> pulumi.Output[None]:
        valid = cfg if isinstance(cfg, InfraConfig) else validate(cfg, source="dry run")
        exports = program.build(valid, tokens or placeholders())

        async def collect() -> None:
            for key, value in exports.items():
                out = pulumi.Output.from_input(value)
                result.exports[key] = await out.future()
                result.secret_exports[key] = await out.is_secret()

        return pulumi.Output.from_input(asyncio.ensure_future(collect()))

    evaluate()
    result.resources = monitor.registered
    return result
