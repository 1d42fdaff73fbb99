"""invoke tasks for the infra area."""

from typing import Any

from invoke.tasks import Task

TOP_LEVEL: tuple[Task[Any], ...] = ()
