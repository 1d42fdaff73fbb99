"""Export keys of the infra stack: shared by the program, its consumers and the tests."""

from __future__ import annotations

from typing import Final

# The inventory document (`stacks.common.inventory.InventoryDocument` as a JSON-able dict).
INVENTORY: Final = "inventory"
# `https://<first ctrl private IP>:6443`.
K3S_API_ENDPOINT: Final = "k3s_api_endpoint"
# Cloudflare ids of the apps load balancer, its origin pool and the zone.
LB_ID: Final = "lb_id"
LB_POOL_ID: Final = "lb_pool_id"
ZONE_ID: Final = "zone_id"
# Public IPv4 of every LB origin (cloud and Robot run nodes), sorted by node name.
LB_ORIGINS: Final = "lb_origins"
# Public IPv4 of the PowerDNS VM (ns1/ns2 point at it).
DNS_PUBLIC_IPV4: Final = "dns_public_ipv4"

ALL: Final = (INVENTORY, K3S_API_ENDPOINT, LB_ID, LB_POOL_ID, ZONE_ID, LB_ORIGINS, DNS_PUBLIC_IPV4)
