"""Driving the infra stack through Pulumi's Automation API (`up`, `preview`, `outputs`).

The Automation API shells out to the `pulumi` CLI, so every entry point first checks that the
binary exists and validates the stack's config file, failing with a message that says what to
do instead of a traceback from deep inside the engine.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from typing import Any

from pulumi import automation as auto

from stacks.infra import config

INSTALL_HINT = (
    "install the Pulumi CLI (`curl -fsSL https://get.pulumi.com | sh`, then add ~/.pulumi/bin to "
    "PATH) and log in to a state backend (`pulumi login`)"
)


class PulumiNotAvailable(RuntimeError):
    """No `pulumi` binary on PATH; the message says how to install it."""


class PulumiFailed(RuntimeError):
    """The Pulumi CLI reported an error; the message carries its last lines."""


def _require_cli() -> str:
    path = shutil.which("pulumi")
    if path is None:
        raise PulumiNotAvailable(f"no `pulumi` binary on PATH: {INSTALL_HINT}")
    return path


def select_stack(env: str) -> auto.Stack:
    """The stack `env` of the infra project, created in the current backend if missing."""
    _require_cli()
    # Validate before the engine runs: the same one-sentence errors as `invoke plan`.
    config.load_file(config.stack_file(env))
    return auto.create_or_select_stack(stack_name=env, work_dir=str(config.STACK_DIR))


def _tail(exc: auto.CommandError) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return " | ".join(lines[-3:])


def up(env: str, *, on_output: Callable[[str], None] | None = None) -> dict[str, Any]:
    """`pulumi up` for `env`; returns the stack outputs (values; secrets stay in the result)."""
    stack = select_stack(env)
    try:
        result = stack.up(on_output=on_output)
    except auto.CommandError as exc:
        raise PulumiFailed(f"pulumi up {env} failed: {_tail(exc)}") from exc
    return {key: out.value for key, out in result.outputs.items()}


def preview(
    env: str,
    *,
    expect_no_changes: bool = False,
    on_output: Callable[[str], None] | None = None,
) -> bool:
    """`pulumi preview` for `env`; True when the live stack already matches the program.

    With `expect_no_changes` the CLI itself fails on any pending change (drift detection); that
    failure is reported as False, every other failure raises `PulumiFailed`.
    """
    stack = select_stack(env)
    try:
        result = stack.preview(expect_no_changes=expect_no_changes or None, on_output=on_output)
    except auto.CommandError as exc:
        if expect_no_changes and "no changes were expected" in str(exc).lower():
            return False
        raise PulumiFailed(f"pulumi preview {env} failed: {_tail(exc)}") from exc
    # Keys are OpType members (a str enum) or plain strings, depending on the CLI version.
    changes = {
        op: n for op, n in result.change_summary.items() if getattr(op, "value", op) != "same" and n
    }
    return not changes


def _stack_outputs(env: str) -> Mapping[str, auto.OutputValue]:
    stack = select_stack(env)
    try:
        return stack.outputs()
    except auto.CommandError as exc:
        raise PulumiFailed(f"pulumi stack output {env} failed: {_tail(exc)}") from exc


def outputs(env: str) -> dict[str, Any]:
    """The current outputs of stack `env`, secrets in clear (for programs, not for printing)."""
    return {key: out.value for key, out in _stack_outputs(env).items()}


def masked_outputs(env: str) -> dict[str, Any]:
    """The current outputs of stack `env` with every output Pulumi holds as a secret shown as
    "[secret]": safe to print."""
    return {
        key: "[secret]" if out.secret else out.value for key, out in _stack_outputs(env).items()
    }
