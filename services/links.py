"""Binding a customer of the operator's service to a Telegram user, through a single-use /start link.

One Telegram user has at most one external id and one external id at most one user (a UNIQUE index); binding
again replaces the old binding, in the audit log, in the same transaction as the user.linked event.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import Enum

from services.operator_events import OperatorEvents
from services.store import Database, now_ts
from services.store import admin as audit_log
from services.store import links, users

# Telegram's /start payload: up to 64 of A-Z a-z 0-9 _ -; "L" marks ours, so other deep links can come later.
TOKEN_PREFIX = "L"
EXTERNAL_ID_MAX = 128


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def looks_like_token(text: str) -> bool:
    return text.startswith(TOKEN_PREFIX) and 20 <= len(text) <= 64


@dataclass(frozen=True)
class NewLink:
    token: str
    expires_at: int


class LinkRefused(str, Enum):
    USED = "used"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Bound:
    external_id: str
    replaced: str | None        # this user's previous external id
    taken_from: int | None      # the user who held this external id before


class Linker:
    def __init__(self, db: Database, events: OperatorEvents, *, ttl_hours: int) -> None:
        self._db = db
        self._events = events
        self.ttl_seconds = ttl_hours * 3600

    async def create(self, external_id: str) -> NewLink:
        token = TOKEN_PREFIX + secrets.token_urlsafe(24)
        expires_at = now_ts() + self.ttl_seconds
        async with self._db.transaction() as tx:
            await links.add(tx, token_hash=token_hash(token), external_id=external_id, expires_at=expires_at)
        return NewLink(token, expires_at)

    async def bind(self, token: str, user_id: int, actor_name: str) -> Bound | LinkRefused:
        digest = token_hash(token)
        async with self._db.transaction() as tx:
            # Binds take turns (they are rare: a person pressing a link). Without this, on PostgreSQL two users binding
            # one external id at once both saw no holder and the second hit the UNIQUE index (an error, no reply).
            await tx.advisory_lock("account-links.bind")
            external_id = await links.use(tx, digest, user_id)
            if external_id is None:
                return LinkRefused(await links.state(tx, digest))
            taken_from, replaced = await users.set_external_id(tx, user_id, external_id)
            if replaced is not None and replaced != external_id or taken_from is not None:
                await audit_log.audit(tx, actor_id=user_id, actor_name=actor_name, action="external_id_rebind",
                                      target=f"user:{user_id}", details={
                                          "external_id": external_id, "replaced": replaced,
                                          "taken_from_user": taken_from})
            else:
                await audit_log.audit(tx, actor_id=user_id, actor_name=actor_name, action="external_id_bind",
                                      target=f"user:{user_id}", details={"external_id": external_id})
            await self._events.user_linked(tx, user_id, external_id, digest[:32])
        return Bound(external_id, replaced, taken_from)
