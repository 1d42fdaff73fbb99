"""Create the first API key of a tenant straight in the store (the API need not be running)."""

from __future__ import annotations

from stacks.deployer.auth import issue_key
from stacks.deployer.db import make_engine, migrate, session_factory, session_scope


def create_api_key(database_url: str, tenant: str, name: str) -> str:
    """Migrate the store, then create a key for `tenant`; the key is returned once, never stored."""
    engine = make_engine(database_url)
    try:
        migrate(engine)
        with session_scope(session_factory(engine)) as session:
            return issue_key(session, tenant, name)
    finally:
        engine.dispose()
