"""Developer tasks: the whole check suite (`invoke test`) and its parts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import Task, task

from stacks.common import system_packages

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

# pytest exits 5 when it collected nothing; for a filtered run that is not a failure of the code.
PYTEST_NO_TESTS = 5


def _tool(name: str) -> str:
    return str(VENV_BIN / name)


@task(help={"fix": "apply ruff's safe fixes instead of only reporting"})
def lint(c: Context, fix: bool = False) -> None:
    """Lint Python (ruff, mypy --strict) and YAML/Ansible (yamllint, ansible-lint)."""
    with c.cd(str(ROOT)):
        c.run(f"{_tool('ruff')} check {'--fix' if fix else ''} .", echo=True)
        c.run(f"{_tool('ruff')} format --check .", echo=True)
        typed = ["stacks", "tests", "tasks.py", *(str(p) for p in sorted(ROOT.glob("bench/*.py")))]
        c.run(f"{_tool('mypy')} {' '.join(typed)}", echo=True)
        yaml_dirs = [d for d in ("ansible", "k8s", ".github", "stacks") if (ROOT / d).is_dir()]
        c.run(f"{_tool('yamllint')} --strict {' '.join(yaml_dirs)}", echo=True)
        if (ROOT / "ansible" / "playbooks").is_dir():
            with c.cd(str(ROOT / "ansible")):
                c.run(f"{_tool('ansible-lint')} --offline --profile production", echo=True)


@task(
    help={
        "k": "only tests matching this pytest -k expression",
        "path": "test path(s) to run (default: the whole tests/ tree)",
        "no_lint": "skip the lint step",
        "no_system": "do not install the Debian packages the real-host tests need",
    }
)
def test(
    c: Context, k: str = "", path: str = "tests", no_lint: bool = False, no_system: bool = False
) -> None:
    """Run every check: install test dependencies, lint, then pytest over the whole tree."""
    if not no_system:
        try:
            system_packages.ensure_podman()
            system_packages.ensure_areas(*system_packages.PACKAGES)
        except system_packages.SystemPackageError as exc:
            raise Exit(f"test: {exc}") from exc
    if not no_lint:
        lint(c)
    selector = f"-k {k!r}" if k else ""
    with c.cd(str(ROOT)):
        result = c.run(f"{_tool('pytest')} {selector} {path}", echo=True, warn=True, pty=False)
    code = result.exited if result is not None else 1
    if code == PYTEST_NO_TESTS and k:
        print(f"test: no test matched -k {k!r}")  # noqa: T201 - task output for a person
        return
    if code != 0:
        raise Exit(f"test: pytest failed (exit {code}); the summary above names the failures", code)


TOP_LEVEL: tuple[Task[Any], ...] = (test,)
