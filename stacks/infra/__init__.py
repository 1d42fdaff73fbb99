"""The infra Pulumi project: Hetzner pools, vSwitch, firewalls, PowerDNS VM, Cloudflare LB."""
