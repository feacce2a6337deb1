"""A deposit whose creation a crash interrupted (issue 8, item 8): after the restart the customer's "Creating your
deposit…" message says nothing was created and offers to try again, and the coupon is free again.

The first process is left hanging inside the gateway call, exactly where a crash would stop it (no except or finally
runs), and a second one is started on the same SQLite file, through the real dispatcher and the fake Bot API.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

from services.gateways.base import CreatedDeposit, DepositRequest
from services.gateways.sandbox import SandboxGateway
from services.store import CouponKind, DepositStatus
from services.store import coupons as coupon_repo
from services.store.db import fetch_value
from tests.fakes.bot_api import FakeBotAPI
from tests.harness import Harness

USER = 777


class StuckGateway(SandboxGateway):
    """The gateway call never returns: the process "dies" while waiting for it."""

    def __init__(self) -> None:
        super().__init__()
        self.called = asyncio.Event()

    async def create_deposit(self, request: DepositRequest) -> CreatedDeposit:
        self.called.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_after_a_crash_during_creation_the_message_says_nothing_was_created(api: FakeBotAPI, tmp_path: Path):
    db_path = tmp_path / "bot.sqlite3"
    stuck = StuckGateway()
    first = await Harness.start(api, db_path, gateway=stuck)
    async with first.app.db.transaction() as tx:
        coupon_id = await coupon_repo.create(tx, code="ONCE5", kind=CouponKind.FIXED, value=500, max_uses=1)
    await first.send(USER, "/topup")
    await first.tap(USER, "USDT")
    await first.tap(USER, "TRON (TRC-20)")
    await first.send(USER, "20")
    await first.send(USER, "ONCE5")
    assert "Please check your top-up" in first.last_text(USER)
    creating = asyncio.create_task(first.tap(USER, "Create"))
    await asyncio.wait_for(stuck.called.wait(), 10)
    message = first.last(USER)
    assert "Creating your deposit" in message["text"]

    second = await Harness.start(api, db_path)  # the restarted bot; the first never gets to run its cleanup
    try:
        deposit_id = await fetch_value(second.app.db.reader, "SELECT id FROM deposits")
        created_at = await fetch_value(second.app.db.reader, "SELECT created_at FROM deposits")
        report = await second.app.reconciler.run_once(now=created_at + 61)
        assert report.abandoned == 1
        await second.deliver()

        edited = api.messages[(USER, message["message_id"])]
        assert "could not be created" in edited["text"] and "Nothing was created" in edited["text"]
        assert any("Top up" in label for label in second.buttons(edited))
        status = await fetch_value(second.app.db.reader, "SELECT status FROM deposits WHERE id = ?", (deposit_id,))
        assert status == DepositStatus.FAILED.value
        coupon = await coupon_repo.get(second.app.db.reader, coupon_id)
        assert coupon is not None and coupon.used_count == 0  # free again: the user may use it right away

        # Nothing more on a later pass: told once.
        await second.app.reconciler.run_once(now=created_at + 300)
        assert await second.deliver() == 0
    finally:
        creating.cancel()
        await asyncio.gather(creating, return_exceptions=True)
        await second.close()
        await first.close()
