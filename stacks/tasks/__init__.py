"""invoke task modules, one per area; `tasks.py` assembles them into one Collection.

Each module may define `TOP_LEVEL`, the tasks that also appear as top-level verbs.
"""
