"""Code shared by several stacks and task modules."""
