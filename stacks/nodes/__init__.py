"""Nodes: the Ansible inventory built from the infra stack, and growing the run pool."""
