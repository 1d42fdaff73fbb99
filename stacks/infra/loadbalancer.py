"""Cloudflare: health monitor, origin pool of the run nodes, apps load balancer, ns1/ns2 records."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_cloudflare as cloudflare

from stacks.infra.config import InfraConfig


@dataclass(frozen=True)
class Origin:
    name: str
    address: pulumi.Input[str]


class AppsLoadBalancer(pulumi.ComponentResource):
    monitor: cloudflare.LoadBalancerMonitor
    pool: cloudflare.LoadBalancerPool
    lb: cloudflare.LoadBalancer
    records: list[cloudflare.DnsRecord]

    def __init__(
        self,
        name: str,
        cfg: InfraConfig,
        origins: list[Origin],
        dns_public_ipv4: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("pier:infra:AppsLoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cf = cfg.cloudflare
        self.monitor = cloudflare.LoadBalancerMonitor(
            f"{name}-monitor",
            account_id=cf.account_id,
            type="http",
            method="GET",
            path=cf.monitor_path,
            port=cf.monitor_port,
            expected_codes="200",
            interval=60,
            timeout=5,
            retries=2,
            description=f"pier {cfg.env} run nodes",
            opts=child,
        )
        self.pool = cloudflare.LoadBalancerPool(
            f"{name}-pool",
            account_id=cf.account_id,
            name=f"pier-{cfg.env}-run",
            description=f"pier {cfg.env}: every run node, cloud and Robot",
            monitor=self.monitor.id,
            minimum_origins=1,
            origins=[
                cloudflare.LoadBalancerPoolOriginArgs(
                    name=o.name, address=o.address, enabled=True, weight=1
                )
                for o in origins
            ],
            opts=child,
        )
        self.lb = cloudflare.LoadBalancer(
            f"{name}-lb",
            zone_id=cf.zone_id,
            name=cfg.apps_hostname,
            default_pools=[self.pool.id],
            fallback_pool=self.pool.id,
            proxied=True,
            description=f"pier {cfg.env} apps",
            opts=child,
        )
        self.records = [
            cloudflare.DnsRecord(
                f"{name}-{ns}",
                zone_id=cf.zone_id,
                name=f"{ns}.{cfg.domain}",
                type="A",
                content=dns_public_ipv4,
                ttl=300,
                # Name servers must answer on their own address, not Cloudflare's proxy.
                proxied=False,
                comment=f"pier {cfg.env} PowerDNS VM",
                opts=child,
            )
            for ns in ("ns1", "ns2")
        ]
        self.register_outputs({"lb_id": self.lb.id, "pool_id": self.pool.id})
