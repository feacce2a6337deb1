"""The admin chat's daily summary: queued once per UTC day at the operator's hour, whatever restarts happen."""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

from services.store import Database
from services import admin_reports
from services.notifications import AdminDailySummary, queue
from services.store import outbox

log = logging.getLogger(__name__)

DAY_SECONDS = 24 * 60 * 60


async def queue_daily_summary(db: Database, *, admin_chat_id: int, hour: int, now: datetime,
                              include_test: bool = False) -> bool:
    """Queue today's summary if it is the hour; the date in the dedupe key makes it once a day. Sandbox money counts
    only while the sandbox runs (`include_test`), like /stats."""
    if now.hour != hour:
        return False
    dedupe_key = f"summary:{now.date().isoformat()}"
    if await outbox.queued(db.reader, dedupe_key):
        return False  # already queued today: don't count the day again every minute of the hour
    since = int(now.timestamp()) - DAY_SECONDS
    stats = await admin_reports.stats(db, since, include_test=include_test)
    async with db.transaction() as tx:
        queued = await queue(tx, AdminDailySummary(since, stats), chat_id=admin_chat_id, dedupe_key=dedupe_key)
    return queued is not None


async def daily_summary_forever(db: Database, *, admin_chat_id: int, hour: int, include_test: bool = False) -> None:
    while True:
        try:
            await queue_daily_summary(db, admin_chat_id=admin_chat_id, hour=hour, now=datetime.now(timezone.utc),
                                      include_test=include_test)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a missed summary must not stop the next
            log.exception("could not queue the daily summary")
        await asyncio.sleep(60)
