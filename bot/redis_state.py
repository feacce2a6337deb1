"""Conversation state, the per-user update lock and finished-update marks in Redis, so many instances act as one bot.

Redis holds only what a conversation needs between two taps; nothing about money is ever kept there (the database
is the only source of truth). It is an accelerator, not a fallback: if it is down, updates fail with a retryable
503 and /healthz says so, instead of each instance quietly keeping its own state in memory.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.fsm.storage.base import DefaultKeyBuilder
from aiogram.fsm.storage.redis import RedisEventIsolation, RedisStorage
from aiogram.types import TelegramObject, Update
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# The per-user lock must outlive the slowest handler, which waits on a gateway call (20 s timeout) plus a few
# database and Bot API round trips; otherwise a second instance could run the same user's next tap alongside.
# It must also expire, or an instance killed mid-update would leave that user stuck (aiogram PR #972).
UPDATE_LOCK_SECONDS = 45
# A conversation left half-way is forgotten after a week, so abandoned chats don't pile up in Redis.
STATE_TTL_SECONDS = 7 * 24 * 3600
# Telegram re-sends an unanswered update for about a day at most.
FINISHED_UPDATE_TTL_SECONDS = 24 * 3600
PING_TIMEOUT_SECONDS = 2.0


@dataclass
class RedisState:
    """One Redis connection pool and what is built on it."""

    redis: Redis
    storage: RedisStorage
    isolation: RedisEventIsolation
    finished_updates: FinishedUpdates

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError):
            return False

    async def eviction_policy(self) -> str | None:
        """Redis' maxmemory-policy, from INFO (allowed where CONFIG is not, as on most managed Redis)."""
        try:
            policy = (await self.redis.info("memory")).get("maxmemory_policy")
        except (RedisError, OSError):
            return None
        return str(policy) if policy is not None else None

    async def close(self) -> None:
        await self.redis.aclose()


def eviction_warning(policy: str | None) -> str | None:
    """What to tell the operator about a policy that may evict a live lock or a conversation; None when it is safe."""
    if policy is None or policy == "noeviction":
        return None
    return (f"Redis maxmemory-policy is {policy}: under memory pressure it may evict a user's update lock (two "
            "instances would then handle that user at once) or a conversation; set maxmemory-policy noeviction")


def connect_redis(url: str, *, prefix: str) -> RedisState:
    """Build the storage, the lock and the marks on one pool (nothing is contacted until the first command)."""
    redis = Redis.from_url(url, socket_timeout=5, socket_connect_timeout=PING_TIMEOUT_SECONDS,
                           health_check_interval=30)
    keys = DefaultKeyBuilder(prefix=prefix, with_bot_id=True, with_destiny=True)
    storage = RedisStorage(redis, key_builder=keys, state_ttl=STATE_TTL_SECONDS, data_ttl=STATE_TTL_SECONDS)
    isolation = RedisEventIsolation(redis, key_builder=keys, lock_kwargs={"timeout": UPDATE_LOCK_SECONDS})
    return RedisState(redis, storage, isolation, FinishedUpdates(redis, prefix=prefix))


async def redis_reachable(url: str) -> bool:
    """Checked before anything else starts: an instance that can't share state must not run on its own."""
    state = connect_redis(url, prefix="")
    try:
        return await state.ping()
    finally:
        await state.close()


class FinishedUpdates(BaseMiddleware):
    """Skip an update that some instance already handled to the end; mark each one that finishes.

    Telegram re-sends an update whose answer it did not get, e.g. when the instance died after the handler's work
    but before the 200. The mark is written *after* the handler, so a crash before it means the update runs again
    (never lost); the conversation's state checks bound what a second run can do. Registered after aiogram's FSM
    middleware, it runs inside the per-user lock, so two copies arriving at once are handled one after the other
    and the second sees the first's mark.
    """

    def __init__(self, redis: Redis, *, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    def key(self, bot_id: int, update_id: int) -> str:
        return f"{self._prefix}:finished:{bot_id}:{update_id}"

    async def __call__(self, handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
                       event: TelegramObject, data: dict[str, Any]) -> Any:
        if not isinstance(event, Update):
            return await handler(event, data)
        key = self.key(data["bot"].id, event.update_id)
        if await self._redis.exists(key):
            log.info("update %s was already handled by an instance; skipped", event.update_id)
            return UNHANDLED
        result = await handler(event, data)
        await self._redis.set(key, 1, ex=FINISHED_UPDATE_TTL_SECONDS)
        return result
