"""Minimal cloud-init for pier servers: hostname and SSH hardening; Ansible does the rest."""

from __future__ import annotations

import json


def user_data(hostname: str, pool: str, env: str) -> str:
    # JSON is valid YAML, and json.dumps quotes every value safely.
    doc = {
        "hostname": hostname,
        "preserve_hostname": False,
        "ssh_pwauth": False,
        "disable_root": False,
        "package_update": False,
        "write_files": [
            {
                "path": "/etc/pier/node.json",
                "permissions": "0644",
                "content": json.dumps({"name": hostname, "pool": pool, "env": env}) + "\n",
            }
        ],
    }
    return "#cloud-config\n" + json.dumps(doc, indent=2, sort_keys=True) + "\n"
