"""Which instance leads: the one holding the database's leader lock sends notifications and runs the chores.

On PostgreSQL the lock is an advisory lock on a connection of its own: the instance that holds it leads until that
connection ends (a crash closes it, and the server hands the lock to the next waiting instance within milliseconds).
On SQLite there is only one process, and it always leads.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any
from contextlib import suppress

from services.store import Database
from services.store.db import store_busy_errors

log = logging.getLogger(__name__)

LEADER_LOCK = "leader"
RETRY_SECONDS = 1.0

Duty = Callable[[], Coroutine[Any, Any, None]]


class Leadership:
    """Waits for the leader lock; while it holds it, runs the duties, and stops them the moment the lock is lost.

    `on_elected` runs once per term (the start-up chores: setWebhook, the command menus); each of `duties` runs as a
    task for the whole term (the notification sender, the daily summary).
    """

    def __init__(self, db: Database, *, on_elected: Duty, duties: dict[str, Duty]) -> None:
        self._db = db
        self._on_elected = on_elected
        self._duties = duties
        self.leading = asyncio.Event()

    @property
    def is_leader(self) -> bool:
        return self.leading.is_set()

    async def run_forever(self) -> None:
        while True:
            try:
                async with self._db.session_lock(LEADER_LOCK, wait=True) as lock:
                    if lock.held:
                        await self._lead(lock.lost)
                continue
            except store_busy_errors() as exc:  # the wait hit the server's lock_timeout, or the server is away
                log.debug("still waiting for the leader lock (%s)", type(exc).__name__)
                await asyncio.sleep(0.5)
                continue
            except Exception:  # noqa: BLE001 - whatever it is, an instance must keep trying to lead
                log.warning("leader election failed; retrying in %ss", RETRY_SECONDS, exc_info=True)
            await asyncio.sleep(RETRY_SECONDS)

    async def lead_while(self, lost: Callable[[], Awaitable[None]]) -> None:
        """Lead with a lock the caller already holds (long polling), until `lost` returns."""
        await self._lead(lost)

    async def _lead(self, lost: Callable[[], Awaitable[None]]) -> None:
        log.info("this instance leads: it sends the notifications and runs the chores")
        self.leading.set()
        tasks = [asyncio.create_task(duty(), name=name) for name, duty in self._duties.items()]
        try:
            try:
                await self._on_elected()
            except Exception:  # noqa: BLE001 - a chore that failed must not stop the sending
                log.warning("a start-up chore failed", exc_info=True)
            await lost()
            log.warning("this instance lost the leader lock; another one takes over")
        finally:
            self.leading.clear()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with suppress(asyncio.CancelledError, Exception):
                    await task
