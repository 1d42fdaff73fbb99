"""invoke tasks for the svc area."""

from typing import Any

from invoke.tasks import Task

TOP_LEVEL: tuple[Task[Any], ...] = ()
