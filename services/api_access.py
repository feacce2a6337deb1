"""Who may use the operator API: keys made by the CLI (kept as hashes) plus OPERATOR_API_KEY from the environment.

A key is checked against every active hash with a constant-time compare, read from the database on each request,
so a key revoked from the CLI (another process) is refused at once.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import Enum

from services.store import Database
from services.store import admin as audit_log
from services.store import api_keys
from services.store.api_keys import ApiKey

KEY_PREFIX = "tk_"
# The CLI acts as a person at the server's console: audit entries name it with this id (no Telegram user has 0).
CLI_ACTOR_ID = 0
ENV_KEY_NAME = "OPERATOR_API_KEY"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True)
class Caller:
    name: str
    read_only: bool


class Access(str, Enum):
    OFF = "off"                # no key configured: the API is not there
    UNKNOWN = "unknown"        # no key, or not one of ours
    GRANTED = "granted"


class ApiAccess:
    def __init__(self, db: Database, env_key: str | None) -> None:
        self._db = db
        self._env_hash = key_hash(env_key) if env_key else None

    async def check(self, presented: str | None) -> tuple[Access, Caller | None]:
        keys = await api_keys.active(self._db.reader)
        if not keys and self._env_hash is None:
            return Access.OFF, None
        if not presented:
            return Access.UNKNOWN, None
        digest = key_hash(presented)
        found: Caller | None = None
        # Every hash is compared, in constant time, whichever matches: the time taken says nothing about the key.
        if self._env_hash is not None and hmac.compare_digest(digest, self._env_hash):
            found = Caller(ENV_KEY_NAME, read_only=False)
        for key in keys:
            if hmac.compare_digest(digest, key.key_hash):
                found = Caller(key.name, key.read_only)
        return (Access.GRANTED, found) if found is not None else (Access.UNKNOWN, None)


class KeyNameTaken(Exception):
    pass


async def create_key(db: Database, name: str, *, read_only: bool) -> str:
    """A new key, returned once; the database keeps its hash, and the audit log its name only."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    async with db.transaction() as tx:
        if await api_keys.add(tx, name=name, key_hash=key_hash(key), read_only=read_only) is None:
            raise KeyNameTaken(name)
        await audit_log.audit(tx, actor_id=CLI_ACTOR_ID, actor_name="cli", action="api_key_create",
                              target=f"api_key:{name}", details={"read_only": read_only})
    return key


async def revoke_key(db: Database, name: str) -> bool:
    async with db.transaction() as tx:
        if not await api_keys.revoke(tx, name):
            return False
        await audit_log.audit(tx, actor_id=CLI_ACTOR_ID, actor_name="cli", action="api_key_revoke",
                              target=f"api_key:{name}")
    return True


async def list_keys(db: Database) -> list[ApiKey]:
    return await api_keys.all_keys(db.reader)
