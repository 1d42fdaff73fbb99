from ipaddress import IPv4Address

import pytest
from pydantic import ValidationError

from stacks.common.inventory import InventoryDocument, Taint

DOC = {
    "env": "staging",
    "domain": "example.net",
    "network": {"cidr": "10.0.0.0/16", "cloud_subnet": "10.0.0.0/20"},
    "k3s_api_endpoint": "https://10.0.1.1:6443",
    "registry": "10.0.3.1:5000",
    "hosts": [
        {
            "name": "staging-run-1",
            "pool": "run",
            "kind": "cloud",
            "public_ipv4": "192.0.2.10",
            "private_ip": "10.0.4.1",
            "location": "fsn1",
            "labels": {"pier.dev/pool": "run"},
            "taints": [],
        },
        {
            "name": "staging-dns",
            "pool": "dns",
            "kind": "cloud",
            "public_ipv4": None,
            "private_ip": "10.0.0.53",
            "location": "fsn1",
        },
    ],
}


def test_document_round_trips_through_json() -> None:
    doc = InventoryDocument.model_validate(DOC)
    again = InventoryDocument.model_validate_json(doc.model_dump_json())
    assert again == doc
    assert [h.name for h in doc.pool("run")] == ["staging-run-1"]
    assert doc.pool("dns")[0].private_ip == IPv4Address("10.0.0.53")


def test_unknown_pool_is_refused() -> None:
    hosts: list[dict[str, object]] = DOC["hosts"]  # type: ignore[assignment]
    bad = {**DOC, "hosts": [{**hosts[0], "pool": "gpu"}]}
    with pytest.raises(ValidationError, match="pool"):
        InventoryDocument.model_validate(bad)


@pytest.mark.parametrize(
    ("taint", "arg"),
    [
        (
            Taint(key="pier.dev/pool", value="build", effect="NoSchedule"),
            "pier.dev/pool=build:NoSchedule",
        ),
        (Taint(key="dedicated", effect="NoExecute"), "dedicated:NoExecute"),
    ],
)
def test_taint_k3s_form(taint: Taint, arg: str) -> None:
    assert taint.as_k3s_arg() == arg
