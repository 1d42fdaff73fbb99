"""The store and the deploy orchestration on SQLite and PostgreSQL (in-memory runtime)."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from sqlalchemy import inspect, select

from stacks.deployer.auth import KeyVerifier, Principal, issue_key
from stacks.deployer.bootstrap import create_api_key
from stacks.deployer.db import make_engine, migrate, session_factory, session_scope
from stacks.deployer.deploys import Deployer, ServiceError
from stacks.deployer.models import ApiKey, Deployment, DeploymentStatus, Service, ServiceStatus
from stacks.deployer.reconcile import INTERRUPTED, reconcile, sweep_orphans
from stacks.deployer.schemas import ServiceSpec
from tests.stacks.deployer.conftest import at_once, new_pg_database
from tests.stacks.deployer.fake_driver import MemoryDriver

ACME = Principal(tenant="acme", key_name="k", key_prefix="p")
OTHER = Principal(tenant="other", key_name="k", key_prefix="q")


def spec(name: str = "web", image: str = "app:1", **kw: object) -> ServiceSpec:
    return ServiceSpec.model_validate({"name": name, "image": image, **kw})


@pytest.fixture
def deployer(database_url: str) -> Deployer:
    engine = make_engine(database_url)
    migrate(engine)
    return Deployer(session_factory(engine), MemoryDriver(), health_timeout=1)


def test_migrations_create_schema_and_are_idempotent(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    migrate(engine)
    tables = set(inspect(engine).get_table_names())
    assert {"api_keys", "services", "deployments", "alembic_version"} <= tables


def test_api_key_stored_only_as_salted_hash(database_url: str) -> None:
    key = create_api_key(database_url, "acme", "first")
    key2 = create_api_key(database_url, "acme", "second")
    engine = make_engine(database_url)
    sessions = session_factory(engine)
    with sessions() as session:
        rows = list(session.scalars(select(ApiKey)))
        assert len(rows) == 2
        for row in rows:
            assert key not in row.key_hash and row.key_hash.startswith("$argon2id$")
            assert row.prefix in key or row.prefix in key2
        verifier = KeyVerifier(cache_seconds=0)
        principal = verifier.verify(session, key)
        assert principal is not None and principal.tenant == "acme"
        assert principal.key_name == "first"
        assert verifier.verify(session, key[:-1] + ("A" if key[-1] != "A" else "B")) is None
        assert verifier.verify(session, "pier_nope") is None


def test_issue_key_refuses_bad_tenant(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    with pytest.raises(ValueError, match="DNS label"), session_scope(session_factory(engine)) as s:
        issue_key(s, "Bad Tenant", "x")


def test_create_redeploy_history_and_rollback(deployer: Deployer) -> None:
    first = deployer.create(ACME, spec(env={"V": "1"}))
    assert first.status == "live" and first.current_deployment is not None
    with pytest.raises(ServiceError) as dup:
        deployer.create(ACME, spec())
    assert dup.value.status == 409 and "already exists" in dup.value.detail
    with pytest.raises(ServiceError) as none:
        deployer.rollback(ACME, "web")
    assert none.value.status == 409 and "no previous healthy" in none.value.detail

    second = deployer.redeploy(ACME, "web", spec(env={"V": "2"}))
    assert second.spec.env == {"V": "2"}
    assert second.previous_deployment is not None
    assert second.previous_deployment.id == first.current_deployment.id
    driver = deployer.driver
    assert isinstance(driver, MemoryDriver)
    assert list(driver.workloads) == [second.current_deployment.id]  # type: ignore[union-attr]

    back = deployer.rollback(ACME, "web")
    assert back.spec.env == {"V": "1"}
    history = deployer.deployments(ACME, "web")
    assert [(d.seq, d.reason, d.status) for d in history] == [
        (3, "rollback", "live"),
        (2, "redeploy", "superseded"),
        (1, "create", "superseded"),
    ]


def test_failed_redeploy_keeps_old_deployment(deployer: Deployer) -> None:
    good = deployer.create(ACME, spec())
    after = deployer.redeploy(ACME, "web", spec(image="broken:2"))
    assert after.status == "live"
    assert after.current_deployment == good.current_deployment
    failed = deployer.deployments(ACME, "web")[0]
    assert failed.status == "failed" and "boom" in failed.logs
    assert after.spec.image == "app:1"


def test_failed_first_deploy_marks_service_failed(deployer: Deployer) -> None:
    out = deployer.create(ACME, spec(image="broken:1"))
    assert out.status == "failed" and out.current_deployment is None and out.url is None
    logs = deployer.logs(ACME, "web", tail=10)
    assert "boom" in logs.logs
    for bad in (-1, 10_001):
        with pytest.raises(ServiceError, match="tail: must be between 0 and 10000"):
            deployer.logs(ACME, "web", tail=bad)
    with pytest.raises(ServiceError) as exc:
        deployer.stop(ACME, "web")
    assert exc.value.status == 409


def test_tenants_are_isolated(deployer: Deployer) -> None:
    deployer.create(ACME, spec())
    assert deployer.list_all(OTHER) == []
    for op in (deployer.get, deployer.redeploy, deployer.delete, deployer.stop):
        with pytest.raises(ServiceError) as exc:
            op(OTHER, "web")
        assert exc.value.status == 404
    # The same name in another tenant is a different service.
    assert deployer.create(OTHER, spec()).status == "live"


def test_one_operation_at_a_time_per_service(deployer: Deployer) -> None:
    deployer.create(ACME, spec())
    driver = deployer.driver
    assert isinstance(driver, MemoryDriver)
    driver.gate = threading.Event()
    worker = threading.Thread(target=deployer.redeploy, args=(ACME, "web"))
    worker.start()
    while not any(c[0] == "deploy" for c in driver.calls[1:]):
        pass
    with pytest.raises(ServiceError) as exc:
        deployer.rollback(ACME, "web")
    assert exc.value.status == 409 and "busy" in exc.value.detail
    driver.gate.set()
    worker.join()
    assert len(deployer.deployments(ACME, "web")) == 2


def test_concurrent_create_exactly_one_wins(deployer: Deployer) -> None:
    statuses = [status for status, _ in at_once(lambda: deployer.create(ACME, spec()), 6, ok=201)]
    assert statuses == [201, 409, 409, 409, 409, 409]
    assert len(deployer.list_all(ACME)) == 1


def test_reconcile_repairs_runtime_and_keeps_records(deployer: Deployer) -> None:
    driver = deployer.driver
    assert isinstance(driver, MemoryDriver)
    live = deployer.create(ACME, spec("live"))
    gone = deployer.create(ACME, spec("gone"))
    stopped = deployer.create(ACME, spec("paused"))
    deployer.stop(ACME, "paused")
    # Simulate a crash: an interrupted deploy with a half-started workload, a lost container,
    # a deletion that did not finish, and a container nobody knows.
    with session_scope(deployer.sessions) as s:
        svc = s.scalars(select(Service).where(Service.name == "live")).one()
        half = Deployment(service_id=svc.id, seq=2, spec=svc.spec, reason="redeploy")
        s.add(half)
        s.flush()
        half_id = half.id
    deployer.create(ACME, spec("dying"))
    with session_scope(deployer.sessions) as s:
        s.scalars(select(Service).where(Service.name == "dying")).one().status = "deleting"
    template = driver.workloads[live.current_deployment.id]  # type: ignore[union-attr]
    driver.workloads[half_id] = replace(template, deployment_id=half_id)
    driver.workloads.pop(gone.current_deployment.id)  # type: ignore[union-attr]
    driver.workloads["stranger"] = replace(template, deployment_id="stranger")

    report = reconcile(deployer)

    assert report.interrupted == [half_id]
    assert sorted(report.removed_orphans) == sorted([half_id, "stranger"])
    assert report.restarted == ["gone"]
    assert len(report.deleted_services) == 1
    assert [s.name for s in deployer.list_all(ACME)] == ["gone", "live", "paused"]
    history = deployer.deployments(ACME, "live")
    assert history[0].status == DeploymentStatus.FAILED and history[0].error == INTERRUPTED
    assert deployer.get(ACME, "paused").status == ServiceStatus.STOPPED
    assert stopped.current_deployment is not None
    assert set(driver.workloads) == {
        live.current_deployment.id,  # type: ignore[union-attr]
        gone.current_deployment.id,  # type: ignore[union-attr]
        stopped.current_deployment.id,
    }


def test_replicas_sharing_postgresql_take_turns(postgres: str) -> None:
    """Two API replicas (two Deployers, one PostgreSQL store): one operation per service."""
    url = new_pg_database(postgres)
    engine = make_engine(url)
    migrate(engine)
    slow, other = MemoryDriver(), MemoryDriver()
    first = Deployer(session_factory(engine), slow, health_timeout=1)
    second = Deployer(session_factory(make_engine(url)), other, health_timeout=1)
    first.create(ACME, spec())
    slow.gate = threading.Event()
    worker = threading.Thread(target=first.redeploy, args=(ACME, "web"))
    worker.start()
    while len(slow.calls) < 2:
        pass
    with pytest.raises(ServiceError) as exc:
        second.redeploy(ACME, "web")
    assert exc.value.status == 409 and "busy" in exc.value.detail
    slow.gate.set()
    worker.join()
    # Released with the operation: the other replica may go now.
    assert second.redeploy(ACME, "web").current_deployment.seq == 3  # type: ignore[union-attr]


def test_reconcile_finishes_an_interrupted_stop_and_reroutes(deployer: Deployer) -> None:
    driver = deployer.driver
    assert isinstance(driver, MemoryDriver)
    halted = deployer.create(ACME, spec("halted"))
    unrouted = deployer.create(ACME, spec("unrouted"))
    with session_scope(deployer.sessions) as s:
        # The stop was recorded, then the API died before the runtime stopped anything.
        s.scalars(select(Service).where(Service.name == "halted")).one().desired_state = "stopped"
    unrouted_id = unrouted.current_deployment.id  # type: ignore[union-attr]
    driver.workloads[unrouted_id] = replace(driver.workloads[unrouted_id], url=None)

    report = reconcile(deployer)

    assert report.stopped == ["halted"]
    assert deployer.get(ACME, "halted").status == ServiceStatus.STOPPED
    halted_id = halted.current_deployment.id  # type: ignore[union-attr]
    assert driver.workloads[halted_id].state == "stopped"
    assert ("start", unrouted_id) in driver.calls and report.restarted == ["unrouted"]
    assert deployer.get(ACME, "unrouted").status == ServiceStatus.LIVE


def test_sweep_removes_only_orphans(deployer: Deployer) -> None:
    driver = deployer.driver
    assert isinstance(driver, MemoryDriver)
    live = deployer.create(ACME, spec("live"))
    live_id = live.current_deployment.id  # type: ignore[union-attr]
    with session_scope(deployer.sessions) as s:
        svc = s.scalars(select(Service).where(Service.name == "live")).one()
        inflight = Deployment(service_id=svc.id, seq=2, spec=svc.spec, reason="redeploy")
        s.add(inflight)
        s.flush()
        inflight_id = inflight.id
    driver.workloads[inflight_id] = replace(driver.workloads[live_id], deployment_id=inflight_id)
    driver.workloads["late"] = replace(driver.workloads[live_id], deployment_id="late")

    assert sweep_orphans(deployer) == ["late"]
    assert set(driver.workloads) == {live_id, inflight_id}
    assert sweep_orphans(deployer) == []
