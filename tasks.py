"""invoke entry point: `invoke --list` shows every task.

Tasks are defined in `stacks/tasks/`, one module per area, and call library code that the
tests call directly. Top-level verbs (`up`, `down`, `plan`, `drift`, `add-run-node`, `deploy`,
`test`) are the ones people type most; every other task sits in its area's collection.
"""

from types import ModuleType

from invoke.collection import Collection
from invoke.tasks import Task

from stacks.tasks import dev, infra, nodes, svc, up

AREAS: dict[str, ModuleType] = {"svc": svc, "infra": infra, "nodes": nodes, "dev": dev, "up": up}


def build() -> Collection:
    root = Collection()
    for name, module in AREAS.items():
        top_level = tuple(getattr(module, "TOP_LEVEL", ()))
        for task in top_level:
            root.add_task(task)
        # A verb lives in one place only, so `invoke --list` names each task once.
        rest = [v for v in vars(module).values() if isinstance(v, Task) and v not in top_level]
        if rest:
            area = Collection(name)
            for task in rest:
                area.add_task(task)
            root.add_collection(area)
    return root


ns = build()
