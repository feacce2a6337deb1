"""A slow gateway does not freeze the customer (issue 12, item 1).

The gateway call runs outside the user's update lock: /start and /cancel answer while it is in flight, the
"Creating…" message turns into "still working" with a Cancel button, and a deposit the gateway makes after the
customer cancelled is cancelled at the gateway and never shown.
"""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.gateways.base import CreatedDeposit, DepositRequest
from services.gateways.sandbox import SandboxGateway
from services.store import DepositStatus, deposits
from tests.conftest import TEST_REDIS_URL, service_missing
from tests.fakes.bot_api import FakeBotAPI
from tests.harness import Harness

USER = 555


class SlowGateway(SandboxGateway):
    """The sandbox, but each creation waits until the test opens the gate; it can cancel, like Smart CloudPay."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.asked = asyncio.Event()
        self.cancelled: list[str] = []

    async def create_deposit(self, request: DepositRequest) -> CreatedDeposit:
        self.asked.set()
        await self.gate.wait()
        return await super().create_deposit(request)

    async def cancel_deposit(self, order_id: str) -> None:
        self.cancelled.append(order_id)


@pytest.fixture(params=["in-memory lock", "RedisEventIsolation"])
async def slow(request: pytest.FixtureRequest, api: FakeBotAPI,
               tmp_path: Path) -> AsyncIterator[tuple[Harness, SlowGateway]]:
    """The bot with a slow gateway, under both per-user locks: one process, and Redis for many instances."""
    gateway = SlowGateway()
    env = {}
    if request.param == "RedisEventIsolation":
        env = {"REDIS_URL": TEST_REDIS_URL, "REDIS_KEY_PREFIX": await own_redis_prefix()}
    h = await Harness.start(api, tmp_path / "bot.sqlite3", gateway=gateway, **env)
    h.wait_for_creations = False
    h.creations.still_working_after = 0.05  # the bot waits 3 s; the test needn't
    try:
        yield h, gateway
    finally:
        gateway.gate.set()
        await h.creations.join()
        await h.close()
        if env:
            await drop_redis_keys(env["REDIS_KEY_PREFIX"])


async def own_redis_prefix() -> str:
    """A fresh key prefix in the test Redis; drop_redis_keys removes its keys afterwards."""
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        service_missing(f"Redis not reachable at {TEST_REDIS_URL} ({exc}); start it or set TEST_REDIS_URL")
    finally:
        await client.aclose()
    return f"t{uuid.uuid4().hex[:12]}"


async def drop_redis_keys(prefix: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2)
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def tap_create(h: Harness, gateway: SlowGateway) -> dict:
    await h.send(USER, "/topup")
    await h.tap(USER, "BTC")
    await h.send(USER, "10")
    await h.tap(USER, "Create")
    await asyncio.wait_for(gateway.asked.wait(), 5)
    return h.last(USER)


async def until(condition, timeout: float = 5.0) -> None:
    """Wait for what the bot does in the background (the creation task) to show in the fake Bot API."""
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the bot did not get there in time")


async def test_start_answers_while_the_gateway_is_still_creating(slow: tuple[Harness, SlowGateway]) -> None:
    h, gateway = slow
    await tap_create(h, gateway)

    await asyncio.wait_for(h.send(USER, "/start"), 2)  # not queued behind the gateway call

    assert "Hi, Test!" in h.last_text(USER)
    assert not gateway.gate.is_set()
    gateway.gate.set()
    await h.creations.join()
    assert "photo" in h.last(USER)  # the card still arrives: /start didn't cancel what the user asked for


async def test_after_a_while_the_message_says_still_working_and_offers_cancel(
        slow: tuple[Harness, SlowGateway]) -> None:
    h, gateway = slow
    flow = await tap_create(h, gateway)
    assert h.api.messages[(USER, flow["message_id"])]["text"] == "⏳ Creating your deposit…"

    await until(lambda: "Still working" in h.api.messages[(USER, flow["message_id"])]["text"])

    assert h.buttons(h.api.messages[(USER, flow["message_id"])]) == ["✖️ Cancel"]


async def test_cancel_while_creating_means_the_late_deposit_is_cancelled_and_never_shown(
        slow: tuple[Harness, SlowGateway]) -> None:
    h, gateway = slow
    flow = await tap_create(h, gateway)
    await until(lambda: "Still working" in h.api.messages[(USER, flow["message_id"])]["text"])

    await asyncio.wait_for(h.tap(USER, "Cancel"), 2)

    assert "Cancelled. No deposit was created" in h.api.messages[(USER, flow["message_id"])]["text"]
    gateway.gate.set()  # the gateway answers after all
    await h.creations.join()
    deposit = await deposits.get(h.app.db.reader, 1)
    assert deposit is not None and deposit.status is DepositStatus.CANCELLED
    assert gateway.cancelled == [deposit.order_id]
    assert h.api.calls_of("sendPhoto") == []  # never shown as ready
    assert not any("is ready" in text for text in h.texts(USER))


async def test_cancel_command_answers_at_once_and_stops_the_creation(slow: tuple[Harness, SlowGateway]) -> None:
    h, gateway = slow
    flow = await tap_create(h, gateway)

    await asyncio.wait_for(h.send(USER, "/cancel"), 2)

    assert "Top-up cancelled" in h.last_text(USER)
    assert "Cancelled" in h.api.messages[(USER, flow["message_id"])]["text"]
    gateway.gate.set()
    await h.creations.join()
    deposit = await deposits.get(h.app.db.reader, 1)
    assert deposit is not None and deposit.status is DepositStatus.CANCELLED and gateway.cancelled
    assert h.api.calls_of("sendPhoto") == []


async def test_a_shutdown_mid_call_tells_the_user_and_leaves_nothing_created(
        slow: tuple[Harness, SlowGateway]) -> None:
    h, gateway = slow
    flow = await tap_create(h, gateway)

    await h.creations.close(grace_seconds=0.05)

    assert "could not be created" in h.api.messages[(USER, flow["message_id"])]["text"]
    deposit = await deposits.get(h.app.db.reader, 1)
    assert deposit is not None and deposit.status is DepositStatus.FAILED and deposit.order_id is None
