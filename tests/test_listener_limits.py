"""The listener against hostile or broken clients (issue 8, items 5 and 6), over real sockets on 127.0.0.1.

The runner is the bot's own (bot.web.make_runner); only the time limits are shortened so the tests run quickly.
"""
from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

import bot.web
from bot.web import build_web_app, make_runner
from services.gateways.base import GatewayError
from services.gateways.cryptomus import CryptomusGateway
from services.settlement import Settler
from services.store import Database
from services.webhooks import CallbackInbox

KEY = "limits-payment-key-31f0"


@dataclass
class Served:
    host: str
    port: int
    gateway: CryptomusGateway

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def healthz(self) -> tuple[int, dict, str]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session, \
                session.get(f"{self.base}/healthz") as response:
            return response.status, await response.json(), await response.text()

    async def raw(self, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(data)
        await writer.drain()
        return reader, writer


@pytest.fixture
async def served(db: Database, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    monkeypatch.setattr(bot.web, "BODY_READ_SECONDS", 1.0)
    monkeypatch.setattr(bot.web, "KEEPALIVE_SECONDS", 1.0)
    monkeypatch.setattr(bot.web, "HEALTH_WRITE_CHECK_SECONDS", 0.0)
    # A gateway whose API is a closed port: every call fails, with the URL in the operator's detail.
    gateway = CryptomusGateway("http://127.0.0.1:9/api", "merchant-x", KEY, callback_url=None, timeout_seconds=2)
    settler = Settler(db, admin_chat_id=None)
    inbox = CallbackInbox(db, gateway, settler, admin_chat_id=None)
    runner = make_runner(build_web_app(db, gateway, inbox))
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    try:
        yield Served("127.0.0.1", sock.getsockname()[1], gateway)
    finally:
        await runner.cleanup()
        await gateway.close()


HEAD = (b"POST /webhooks/cryptomus HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n")


async def test_a_body_that_stalls_gets_408_and_the_connection_is_released(served: Served):
    reader, writer = await served.raw(HEAD + b'{"type":')
    try:
        answer = await asyncio.wait_for(reader.read(4096), timeout=20)
        assert answer.startswith(b"HTTP/1.1 408")
        assert await asyncio.wait_for(reader.read(), timeout=20) == b""  # closed, not kept alive
    finally:
        writer.close()


async def test_a_connection_that_never_finishes_its_headers_is_closed(served: Served):
    reader, writer = await served.raw(b"POST /webhooks/cryptomus HTTP/1.1\r\nHost: bot\r\nX-Slow: ")
    try:
        assert await asyncio.wait_for(reader.read(), timeout=20) == b""
    finally:
        writer.close()


async def test_many_stalled_clients_are_all_answered_and_healthz_still_answers(served: Served):
    stalled = [await served.raw(HEAD + b"{") for _ in range(100)]
    try:
        status, _, _ = await served.healthz()
        assert status == 200
        answers = await asyncio.wait_for(asyncio.gather(*(r.read(4096) for r, _ in stalled)), timeout=30)
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers)
    finally:
        for _, writer in stalled:
            writer.close()


async def test_a_client_that_aborts_is_one_info_line_not_a_traceback(served: Served, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        _, writer = await served.raw(HEAD + b'{"type":"pay')
        await asyncio.sleep(0.05)
        writer.transport.abort()  # a reset, as a client that gives up mid-body
    await asyncio.sleep(0.5)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []
    went = [r for r in caplog.records if "client went away" in r.getMessage()]
    assert len(went) == 3 and all(r.levelno == logging.INFO for r in went)


async def refuse_writes(db: Database, refuse: bool) -> None:
    """SQLite: the file goes query-only. PostgreSQL: the table the health check writes refuses every write."""
    if db.dialect == "sqlite":
        await db._writer.execute(f"PRAGMA query_only = {int(refuse)}")  # type: ignore[attr-defined]
        return
    async with db.transaction() as tx:
        if refuse:
            await tx.execute("CREATE FUNCTION refuse_writes() RETURNS trigger LANGUAGE plpgsql AS "
                             "$$ BEGIN RAISE EXCEPTION 'read-only for this test'; END $$")
            await tx.execute("CREATE TRIGGER refuse_writes BEFORE INSERT OR UPDATE ON settings "
                             "FOR EACH ROW EXECUTE FUNCTION refuse_writes()")
        else:
            await tx.execute("DROP TRIGGER refuse_writes ON settings")
            await tx.execute("DROP FUNCTION refuse_writes()")


async def test_healthz_is_not_ok_when_the_database_refuses_writes(served: Served, db: Database):
    status, body, _ = await served.healthz()
    assert status == 200 and body["database"] is True
    await refuse_writes(db, True)  # the database can still be read, but takes no writes
    try:
        status, body, _ = await served.healthz()
        assert status == 503 and body["ok"] is False and body["database"] is False
    finally:
        await refuse_writes(db, False)
    status, _, _ = await served.healthz()
    assert status == 200


async def test_healthz_reports_a_gateway_error_as_a_short_status(served: Served):
    with pytest.raises(GatewayError) as failure:
        await served.gateway.fetch_payment("d1-0000")
    assert "ClientConnectorError" in failure.value.operator_detail  # the operator's detail says what failed...
    status, body, text = await served.healthz()
    assert body["gateway"]["last_error"] == "unavailable"
    assert "ClientConnectorError" not in text and "payment info" not in text  # ...the public endpoint does not
