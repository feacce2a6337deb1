"""Conversation state, the per-user update lock and finished-update marks in Redis, so many instances act as one bot.

Redis holds only what a conversation needs between two taps; nothing about money is ever kept there (the database
is the only source of truth). It is an accelerator, not a fallback: if it is down, updates fail with a retryable
503 and /healthz says so, instead of each instance quietly keeping its own state in memory.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.exceptions import DataNotDictLikeError
from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseEventIsolation, DefaultKeyBuilder, StateType, StorageKey
from aiogram.fsm.storage.redis import RedisEventIsolation, RedisStorage
from aiogram.types import TelegramObject, Update
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
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
class _Conversation:
    """One conversation's state and data as the update holding its lock sees them (data as stored: JSON)."""

    state: str | None
    data: str | None
    changed: bool = False


@dataclass
class _UpdateView:
    """What one update read and changed in Redis, written in one MULTI when it lets go of its lock."""

    conversations: dict[StorageKey, _Conversation] = field(default_factory=dict)
    finished: list[str] = field(default_factory=list)  # FinishedUpdates' marks, written with the state
    open: bool = True


_view: ContextVar[_UpdateView | None] = ContextVar("redis_update_view", default=None)


def _text(value: bytes | str | None) -> str | None:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class UpdateScopedStorage(RedisStorage):
    """aiogram's RedisStorage, read once and written once per update.

    Inside an update (under its per-user lock, `UpdateScopedIsolation`) a conversation's state and data come in one
    MGET on first use and are served from memory after that; what the handlers change is written when the update lets
    go of the lock, in one MULTI with the update's finished mark. The lock is what makes this safe: no other update of
    this user, on any instance, runs in between. A task the update starts (the deposit's creation) shares the view
    until it is written; after that, and outside any update, every call goes to Redis at once, as aiogram's does.
    Before, a step of the top-up flow made about nine round trips to Redis; now five (lock, MGET, finished check,
    MULTI, unlock).
    """

    async def _conversation(self, key: StorageKey) -> _Conversation | None:
        view = _view.get()
        if view is None or not view.open:
            return None
        conversation = view.conversations.get(key)
        if conversation is None:
            state, data = await self.redis.mget(self.key_builder.build(key, "state"),
                                                self.key_builder.build(key, "data"))
            conversation = view.conversations.setdefault(key, _Conversation(_text(state), _text(data)))
        return conversation

    async def get_state(self, key: StorageKey) -> str | None:
        conversation = await self._conversation(key)
        return await super().get_state(key) if conversation is None else conversation.state

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        conversation = await self._conversation(key)
        if conversation is None:
            return await super().set_state(key, state)
        conversation.state = state.state if isinstance(state, State) else state
        conversation.changed = True

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        conversation = await self._conversation(key)
        if conversation is None:
            return await super().get_data(key)
        return {} if conversation.data is None else dict(self.json_loads(conversation.data))

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        if not isinstance(data, dict):
            raise DataNotDictLikeError(f"Data must be a dict or dict-like object, got {type(data).__name__}")
        conversation = await self._conversation(key)
        if conversation is None:
            return await super().set_data(key, data)
        conversation.data = self.json_dumps(data) if data else None
        conversation.changed = True

    def queue_writes(self, view: _UpdateView, pipe: Pipeline) -> bool:
        """Queue what changed since the last call, as aiogram writes it (a cleared state or empty data is deleted),
        and the finished marks; False when there was nothing."""
        queued = False
        for mark in view.finished:
            pipe.set(mark, 1, ex=FINISHED_UPDATE_TTL_SECONDS)
            queued = True
        view.finished.clear()
        for key, conversation in view.conversations.items():
            if not conversation.changed:
                continue
            conversation.changed, queued = False, True
            state_key, data_key = self.key_builder.build(key, "state"), self.key_builder.build(key, "data")
            for redis_key, value, ttl in ((state_key, conversation.state, self.state_ttl),
                                          (data_key, conversation.data, self.data_ttl)):
                if value is None:
                    pipe.delete(redis_key)
                else:
                    pipe.set(redis_key, value, ex=ttl)
        return queued


class UpdateScopedIsolation(BaseEventIsolation):
    """aiogram's per-user Redis lock, with the update's view of Redis opened inside it and written before it is let go
    (even when the handler failed, as each change would have been written at once before)."""

    def __init__(self, inner: RedisEventIsolation, storage: UpdateScopedStorage) -> None:
        self._inner = inner
        self._storage = storage

    @asynccontextmanager
    async def lock(self, key: StorageKey) -> AsyncIterator[None]:
        async with self._inner.lock(key):
            view = _UpdateView()
            token = _view.set(view)
            try:
                yield
            finally:
                _view.reset(token)
                try:
                    # The view stays open until Redis has it all: a task the update started (the deposit's creation)
                    # shares it meanwhile, and whatever it changes during a write is written by the next round.
                    while True:
                        async with self._storage.redis.pipeline(transaction=True) as pipe:
                            if not self._storage.queue_writes(view, pipe):
                                break
                            await pipe.execute()
                finally:
                    view.open = False

    async def close(self) -> None:
        await self._inner.close()


@dataclass
class RedisState:
    """One Redis connection pool and what is built on it."""

    redis: Redis
    storage: UpdateScopedStorage
    isolation: UpdateScopedIsolation
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
    storage = UpdateScopedStorage(redis, key_builder=keys, state_ttl=STATE_TTL_SECONDS, data_ttl=STATE_TTL_SECONDS)
    lock = RedisEventIsolation(redis, key_builder=keys, lock_kwargs={"timeout": UPDATE_LOCK_SECONDS})
    return RedisState(redis, storage, UpdateScopedIsolation(lock, storage), FinishedUpdates(redis, prefix=prefix))


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
        view = _view.get()
        if view is not None and view.open:
            view.finished.append(key)  # written with the update's state, in one MULTI, as its lock is let go
        else:
            await self._redis.set(key, 1, ex=FINISHED_UPDATE_TTL_SECONDS)
        return result
