"""invoke entry point: `invoke --list` shows every task.

Tasks are defined in `stacks/tasks/`, one module per area, and call library code that the
tests call directly. Top-level verbs (`up`, `plan`, `add-run-node`, `drift`, `deploy`, `test`)
are the ones people type most; the rest sit in their area's collection.
"""

from invoke.collection import Collection

from stacks.tasks import dev, infra, nodes, svc, up

ns = Collection()
for module in (dev, infra, nodes, svc, up):
    for task in getattr(module, "TOP_LEVEL", ()):
        ns.add_task(task)
ns.add_collection(Collection.from_module(svc, name="svc"))
ns.add_collection(Collection.from_module(infra, name="infra"))
ns.add_collection(Collection.from_module(nodes, name="nodes"))
ns.add_collection(Collection.from_module(dev, name="dev"))
