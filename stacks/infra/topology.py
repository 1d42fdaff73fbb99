"""A topology picture of one environment (SVG, written directly: no Graphviz needed offline).

Cloudflare (load balancer, origin pool, ns records) on top, the private network below it with
one column per pool inside the cloud subnet, the PowerDNS VM, and the vSwitch subnet with the
Robot servers. Lines show which hosts are LB origins and where ns1/ns2 point.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from stacks.common.inventory import Host, InventoryDocument
from stacks.infra.config import InfraConfig
from stacks.infra.firewall import FIREWALL_GROUPS, WORLD, rules_for

COL_W = 236
GAP = 22
ROW_H = 20
MAX_ROWS = 10
MARGIN = 30
POOL_COLORS = {
    "ctrl": "#dbeafe",
    "ops": "#ede9fe",
    "build": "#fef3c7",
    "run": "#dcfce7",
    "dns": "#fee2e2",
}


@dataclass
class _Svg:
    parts: list[str]

    def rect(
        self, x: float, y: float, w: float, h: float, fill: str, stroke: str = "#334155"
    ) -> None:
        self.parts.append(
            f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="6" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="1.5"/>'
        )

    def text(
        self,
        x: float,
        y: float,
        s: str,
        size: int = 13,
        weight: str = "normal",
        anchor: str = "start",
    ) -> None:
        self.parts.append(
            f'<text x="{x}" y="{y}" font-size="{size}" font-weight="{weight}" '
            f'text-anchor="{anchor}">{escape(s)}</text>'
        )

    def line(
        self, x1: float, y1: float, x2: float, y2: float, color: str, dash: bool = False
    ) -> None:
        style = ' stroke-dasharray="6 4"' if dash else ""
        self.parts.append(
            f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{color}" '
            f'stroke-width="1.5" marker-end="url(#arrow)"{style}/>'
        )


def _column(
    svg: _Svg, x: float, y: float, title: str, subtitle: str, hosts: list[Host], rules: list[str]
) -> float:
    """Draw one pool column (hosts, then its firewall rules); returns its height."""
    shown = hosts[:MAX_ROWS]
    extra = len(hosts) - len(shown)
    rows = len(shown) + (1 if extra else 0)
    h = 52 + ROW_H * rows + 22 + 15 * len(rules) + 8
    fill = POOL_COLORS[hosts[0].pool] if hosts else "#f1f5f9"
    svg.rect(x, y, COL_W, h, fill)
    svg.text(x + 10, y + 20, title, 15, "bold")
    svg.text(x + 10, y + 38, subtitle, 11)
    for i, host in enumerate(shown):
        ty = y + 58 + i * ROW_H
        if host.kind == "robot":
            svg.text(x + 14, ty, f"{host.name}  {host.private_ip}  (Robot)", 11, "bold")
        else:
            svg.text(x + 14, ty, f"{host.name}  {host.private_ip}", 11)
    if extra:
        svg.text(x + 14, y + 58 + len(shown) * ROW_H, f"... and {extra} more", 11, "bold")
    fy = y + 52 + ROW_H * rows + 16
    svg.text(x + 10, fy, "firewall (inbound):", 10, "bold")
    for i, rule in enumerate(rules):
        svg.text(x + 14, fy + 15 * (i + 1), rule, 10)
    return h


def render_svg(inv: InventoryDocument, firewall_rules: dict[str, list[str]], lb_name: str) -> str:
    """The picture as an SVG document."""
    groups = FIREWALL_GROUPS  # one column per pool, each with its firewall
    robots = [h for h in inv.hosts if h.kind == "robot"]
    width = MARGIN * 2 + 40 + len(groups) * COL_W + (len(groups) - 1) * GAP

    def col_x(group: str) -> float:
        return MARGIN + 20 + groups.index(group) * (COL_W + GAP)

    svg = _Svg([])
    svg.text(MARGIN, 30, f"pier {inv.env}: {inv.domain}", 20, "bold")

    # Cloudflare band; the LB sits above the run pool and the ns records above the DNS VM.
    cf_y = 50
    svg.rect(MARGIN, cf_y, width - 2 * MARGIN, 96, "#fff7ed", "#ea580c")
    svg.text(MARGIN + 12, cf_y + 22, "Cloudflare", 15, "bold")
    run_hosts = inv.pool("run")
    lb_x, lb_w = col_x("build"), 2 * COL_W + GAP
    svg.rect(lb_x, cf_y + 32, lb_w, 52, "#ffedd5", "#ea580c")
    svg.text(lb_x + 10, cf_y + 52, f"load balancer {lb_name}", 12, "bold")
    svg.text(lb_x + 10, cf_y + 72, f"origin pool: {len(run_hosts)} run nodes + health monitor", 11)
    ns_x = col_x("dns")
    svg.rect(ns_x, cf_y + 32, COL_W, 52, "#ffedd5", "#ea580c")
    svg.text(ns_x + 10, cf_y + 52, "DNS records ns1, ns2", 12, "bold")
    svg.text(ns_x + 10, cf_y + 72, "A -> PowerDNS VM", 11)

    # Private network: the cloud subnet holds one column per pool plus the PowerDNS VM.
    net_y = cf_y + 136
    col_y = net_y + 70
    heights = []
    for group in groups:
        hosts = list(inv.pool(group))
        cloud = [h for h in hosts if h.kind == "cloud"]
        if group == "dns":
            title = "PowerDNS VM"
        else:
            title = f"{group} pool"
        robot_count = len(hosts) - len(cloud)
        sub = f"{len(cloud)} cloud" + (f" + {robot_count} Robot" if robot_count else "")
        if cloud:
            sub += " in " + ", ".join(sorted({h.location for h in cloud}))
        heights.append(
            _column(svg, col_x(group), col_y, title, sub, hosts, firewall_rules.get(group, []))
        )
    cloud_h = max(heights) + 50
    net_h = 34 + cloud_h + 16
    robot_h = 0.0
    if inv.network.vswitch_subnet is not None:
        robot_h = 40 + ROW_H * max(1, len(robots))
        net_h += robot_h + 16
    back = _Svg([])
    back.rect(MARGIN, net_y, width - 2 * MARGIN, net_h, "#f8fafc")
    back.text(MARGIN + 12, net_y + 22, f"private network {inv.network.cidr}", 15, "bold")
    back.rect(MARGIN + 10, net_y + 34, width - 2 * MARGIN - 20, cloud_h, "#f1f5f9", "#64748b")
    back.text(MARGIN + 20, net_y + 54, f"cloud subnet {inv.network.cloud_subnet}", 12, "bold")
    if inv.network.vswitch_subnet is not None:
        vy = net_y + 34 + cloud_h + 16
        back.rect(MARGIN + 10, vy, width - 2 * MARGIN - 20, robot_h, "#f0fdfa", "#0f766e")
        back.text(
            MARGIN + 20,
            vy + 22,
            f"vSwitch subnet {inv.network.vswitch_subnet} (vSwitch {inv.network.vswitch_id}, "
            f"VLAN {inv.network.vswitch_vlan}, gateway {inv.network.vswitch_gateway}): "
            "dedicated Robot servers",
            12,
            "bold",
        )
        for i, robot in enumerate(robots):
            back.text(
                MARGIN + 30,
                vy + 42 + i * ROW_H,
                f"{robot.name}: pool {robot.pool}, private {robot.private_ip}, "
                f"public {robot.public_ipv4}, {robot.location}",
                11,
            )
        if not robots:
            back.text(MARGIN + 30, vy + 42, "(none)", 11)
    # The network boxes go behind the columns.
    svg.parts[1:1] = back.parts

    run_mid = col_x("run") + COL_W / 2
    svg.line(run_mid, cf_y + 84, run_mid, col_y, "#ea580c")
    dns_mid = col_x("dns") + COL_W / 2
    svg.line(dns_mid, cf_y + 84, dns_mid, col_y, "#dc2626")

    height = net_y + net_h + 44
    svg.text(
        MARGIN,
        height - 16,
        f"k3s API {inv.k3s_api_endpoint}    registry {inv.registry}    "
        "arrows: Cloudflare LB -> run pool origins (cloud and Robot), ns1/ns2 -> PowerDNS VM",
        11,
    )
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#475569"/></marker></defs>'
        f'<rect width="{width}" height="{height}" fill="white"/>'
    )
    return head + "\n".join(svg.parts) + "</svg>\n"


def firewall_summary(cfg: InfraConfig) -> dict[str, list[str]]:
    """`{group: ["22/tcp admin", "443/tcp cloudflare", ...]}` for the picture's captions."""
    names = {
        **{c: "world" for c in WORLD},
        **{c: "cloudflare" for c in cfg.cloudflare.ip_ranges},
        **{c: "admin" for c in cfg.firewall.admin_cidrs},
        **{f"{r.public_ipv4}/32": "Robot" for r in cfg.robot_servers},
        str(cfg.network.cidr): "private",
    }
    out: dict[str, list[str]] = {}
    for group in FIREWALL_GROUPS:
        items = []
        for rule in rules_for(cfg, group):
            if rule["port"] is None:
                continue
            who = ", ".join(dict.fromkeys(names.get(s, s) for s in rule["source_ips"]))
            items.append(f"{rule['port']}/{rule['protocol']} from {who}")
        out[group] = items
    return out
