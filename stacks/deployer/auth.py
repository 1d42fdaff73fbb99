"""API keys: shown once, stored as a salted argon2 hash, found again by a public prefix."""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from stacks.deployer.models import ApiKey
from stacks.deployer.schemas import DNS_LABEL

KEY_PREFIX = "pier_"
PREFIX_CHARS = 12
KEY_SHAPE = re.compile(r"^pier_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$")
# Tenants follow the service-name rule (a DNS label).
TENANT = re.compile(DNS_LABEL)

_hasher = PasswordHasher()


@dataclass(frozen=True)
class Principal:
    """Who is calling: every request acts for exactly one tenant."""

    tenant: str
    key_name: str
    key_prefix: str


def _lookup_prefix() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(PREFIX_CHARS))


def issue_key(session: Session, tenant: str, name: str) -> str:
    """Create a key for `tenant`; the plain key is returned once and never stored."""
    if not TENANT.match(tenant):
        raise ValueError(f"tenant {tenant!r} must be a DNS label (lowercase letters, digits, '-')")
    if not name or len(name) > 100:
        raise ValueError("key name must be 1-100 characters")
    prefix = _lookup_prefix()
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(tenant=tenant, name=name, prefix=prefix, key_hash=_hasher.hash(key)))
    session.flush()
    return key


class KeyVerifier:
    """Checks presented keys against the store, keeping recent successes in memory.

    argon2 costs tens of milliseconds on purpose; caching a verified key (by its SHA-256, never
    the key itself) for a short time keeps request latency low without weakening what is stored.
    """

    def __init__(self, cache_seconds: float) -> None:
        self._ttl = cache_seconds
        self._cache: dict[bytes, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def verify(self, session: Session, presented: str) -> Principal | None:
        match = KEY_SHAPE.match(presented)
        if match is None:
            return None
        digest = hashlib.sha256(presented.encode()).digest()
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        row = session.scalars(select(ApiKey).where(ApiKey.prefix == match.group(1))).first()
        if row is None:
            return None
        try:
            _hasher.verify(row.key_hash, presented)
        except (VerificationError, InvalidHashError):
            return None
        principal = Principal(tenant=row.tenant, key_name=row.name, key_prefix=row.prefix)
        if self._ttl > 0:
            with self._lock:
                self._cache[digest] = (now + self._ttl, principal)
        return principal
