"""Account links (single-use /start tokens binding a customer to the operator's id) and sandbox money that never
becomes real money."""
from __future__ import annotations

import asyncio
import csv
import io
import subprocess
import sys
from pathlib import Path

from services import test_money
from services.links import Bound
from services.store import users
from services.store.db import execute, fetch_all, fetch_value
from tests.fakes.bot_api import FakeBotAPI
from tests.fakes.smsonline import FakeSMSOnline
from tests.harness import ADMIN_CHAT_ID, Harness
from tests.operator import operator_api

ROOT = Path(__file__).resolve().parent.parent
ANNA, BORIS, STAFF = 8001, 8002, 501


# --- links ---

async def test_a_link_binds_the_customer_once_and_tells_them_in_their_language(api: FakeBotAPI,
                                                                              database_url: str) -> None:
    async with operator_api(api, database_url, LINK_TTL_HOURS="2") as op:
        status, link, _ = await op.call("POST", "/api/v1/links", json_body={"external_id": "shop-user-42"})
        assert status == 201 and link["url"] == f"https://t.me/topup_test_bot?start={link['token']}"
        assert link["expires_at"].endswith("Z")
        await op.h.send(ANNA, f"/start {link['token']}", language_code="ru")
        assert any("привязан" in t and "shop-user-42" in t for t in op.h.texts(ANNA))
        status, user, _ = await op.call("GET", "/api/v1/users?external_id=shop-user-42")
        assert status == 200 and user["user_id"] == ANNA and user["external_id"] == "shop-user-42"

        mark = len(op.h.texts(BORIS))
        await op.h.send(BORIS, f"/start {link['token']}")  # used: refused, nothing bound
        assert any("used already" in t for t in op.h.texts(BORIS)[mark:])
        assert (await op.call("GET", f"/api/v1/users/{ANNA}"))[1]["external_id"] == "shop-user-42"
        assert (await op.call("GET", f"/api/v1/users/{BORIS}"))[1]["external_id"] is None
        assert (await op.call("GET", "/api/v1/users?external_id=nobody"))[0] == 404
        assert (await op.call("GET", "/api/v1/users"))[0] == 422
        for bad in ({"external_id": ""}, {"external_id": "x" * 129}, {"external_id": 5}, {}):
            assert (await op.call("POST", "/api/v1/links", json_body=bad))[0] == 422


async def test_an_expired_or_unknown_link_binds_nothing(api: FakeBotAPI, database_url: str) -> None:
    async with operator_api(api, database_url) as op:
        link = (await op.call("POST", "/api/v1/links", json_body={"external_id": "late"}))[1]
        async with op.db.transaction() as tx:
            await execute(tx, "UPDATE account_links SET expires_at = 1")
        await op.h.send(ANNA, f"/start {link['token']}")
        await op.h.send(BORIS, "/start L" + "x" * 30)
        assert any("expired" in t for t in op.h.texts(ANNA))
        assert any("not valid" in t for t in op.h.texts(BORIS))
        assert await fetch_value(op.db.reader, "SELECT COUNT(*) FROM users WHERE external_id IS NOT NULL") == 0
        assert any("Welcome" in t or "balance" in t.lower() for t in op.h.texts(BORIS))  # the menu still comes


async def test_rebinding_replaces_the_old_binding_both_ways_and_is_audited(api: FakeBotAPI, database_url: str) -> None:
    async with operator_api(api, database_url) as op:
        async def bind(user_id: int, external_id: str) -> None:
            link = (await op.call("POST", "/api/v1/links", json_body={"external_id": external_id}))[1]
            await op.h.send(user_id, f"/start {link['token']}")

        await bind(ANNA, "a-1")
        await bind(ANNA, "a-2")                # one Telegram user, one external id: a-1 is let go
        assert any("replaces" in t for t in op.h.texts(ANNA))
        await bind(BORIS, "a-2")               # one external id, one Telegram user: Anna loses it
        rows = await fetch_all(op.db.reader, "SELECT id, external_id FROM users ORDER BY id")
        assert [(r[0], r[1]) for r in rows] == [(ANNA, None), (BORIS, "a-2")]
        audit = await fetch_all(op.db.reader, "SELECT action, target, details FROM admin_actions ORDER BY id")
        assert [r[0] for r in audit] == ["external_id_bind", "external_id_rebind", "external_id_rebind"]
        assert '"replaced": "a-1"' in audit[1][2] and f'"taken_from_user": {ANNA}' in audit[2][2]


async def test_two_customers_binding_one_external_id_at_once_both_get_an_answer(api: FakeBotAPI,
                                                                               postgres_url: str) -> None:
    """PostgreSQL only (SQLite's single writer can't interleave them): two links for one external id, pressed at
    once by two customers on separate connections. Both binds complete, and the id ends with exactly one holder."""
    async with operator_api(api, postgres_url) as op:
        async with op.db.transaction() as tx:
            for user_id in range(1, 21):
                await users.upsert(tx, user_id, None, f"User {user_id}", "en")
        linker = op.h.app.operator_api.linker
        for n in range(10):
            first, second = await linker.create(f"shop-{n}"), await linker.create(f"shop-{n}")
            outcomes = await asyncio.gather(linker.bind(first.token, 2 * n + 1, "a"),
                                            linker.bind(second.token, 2 * n + 2, "b"), return_exceptions=True)
            assert all(isinstance(o, Bound) for o in outcomes), outcomes
            holders = await fetch_all(op.db.reader, "SELECT id FROM users WHERE external_id = ?", (f"shop-{n}",))
            assert len(holders) == 1


# --- sandbox money ---

async def pay_in_sandbox(h: Harness, user_id: int, cents: int) -> None:
    await h.send(user_id, "/start")
    deposit = await h.app.topup.create_deposit(user_id=user_id, chat_id=user_id, coin="USDT", network="TRON",
                                               amount_cents=cents, coupon_code=None)
    await h.app.topup.simulate_payment(user_id, deposit.id)


async def test_sandbox_credit_can_never_be_charged_under_a_real_gateway(api: FakeBotAPI, database_url: str) -> None:
    async with operator_api(api, database_url) as op:           # the sandbox: a customer plays with $50
        await pay_in_sandbox(op.h, ANNA, 5000)
        await op.h.send(ANNA, "/balance")
        assert "$50.00" in op.h.last_text(ANNA)               # the sandbox shows its own money...
        assert (await op.call("GET", f"/api/v1/users/{ANNA}"))[1]["balance_cents"] == 0  # ...the API never
        assert (await op.charge(ANNA, "1.00", "k1"))[0] == 402
        flags = await fetch_all(op.db.reader, "SELECT test FROM ledger UNION ALL SELECT test FROM deposits")
        assert {r[0] for r in flags} == {1}

    api.chat_admins[ADMIN_CHAT_ID] = [STAFF]
    async with FakeSMSOnline(user_id="u", api_key="k") as sms, operator_api(
            api, database_url, PAYMENT_GATEWAY="smsonline", SMSONLINE_USER_ID="u", SMSONLINE_API_KEY="k",
            SMSONLINE_API_URL=sms.base_url) as op:          # the operator goes live
        assert (await op.charge(ANNA, "1.00", "k2"))[0] == 402
        assert (await op.call("GET", f"/api/v1/users/{ANNA}"))[1]["balance_cents"] == 0
        assert (await op.call("GET", "/api/v1/deposits"))[1]["data"] == []
        await op.h.send(ANNA, "/balance")
        assert "$0.00" in op.h.last_text(ANNA)
        await op.h.send(STAFF, "/stats all", chat_id=ADMIN_CHAT_ID)
        assert "$50.00" not in op.h.last_text(ADMIN_CHAT_ID)
        await op.h.send(STAFF, "/export all", chat_id=ADMIN_CHAT_ID)
        exported = api.calls_of("sendDocument")[-1].file("document")
        assert exported is not None
        assert len(list(csv.reader(io.StringIO(exported.decode())))) == 1  # the header only
        # Staff hear of it once, at start (run() calls warn_once when the gateway is real)
        assert await test_money.warn_once(op.db, admin_chat_id=ADMIN_CHAT_ID)
        assert not await test_money.warn_once(op.db, admin_chat_id=ADMIN_CHAT_ID)
        await op.h.deliver()
        notices = [t for t in op.h.texts(ADMIN_CHAT_ID) if "test money" in t]
        assert len(notices) == 1 and "$50.00" in notices[0] and "sandbox-reset" in notices[0]


def sandbox_reset(database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", "sandbox-reset"], capture_output=True, text=True, cwd=ROOT,
                          env={"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"}, timeout=60)


async def test_sandbox_reset_writes_audited_reversing_lines(api: FakeBotAPI, database_url: str) -> None:
    async with operator_api(api, database_url) as op:
        await pay_in_sandbox(op.h, ANNA, 5000)
        await pay_in_sandbox(op.h, BORIS, 700)
    done = sandbox_reset(database_url)
    assert done.returncode == 0, done.stderr
    assert "-$50.00" in done.stdout and "-$7.00" in done.stdout
    assert "No test money" in sandbox_reset(database_url).stdout
    async with operator_api(api, database_url) as op:
        lines = await fetch_all(op.db.reader, "SELECT user_id, amount_cents, kind, test FROM ledger ORDER BY id")
        assert [tuple(r) for r in lines] == [(ANNA, 5000, "deposit", 1), (BORIS, 700, "deposit", 1),
                                              (ANNA, -5000, "adjustment", 1), (BORIS, -700, "adjustment", 1)]
        assert await fetch_value(op.db.reader, "SELECT SUM(balance_cents) FROM users") == 0
        audit = await fetch_all(op.db.reader, "SELECT action, target FROM admin_actions ORDER BY id")
        assert [tuple(r) for r in audit] == [("sandbox_reset", f"user:{ANNA}"), ("sandbox_reset", f"user:{BORIS}")]
        assert not await test_money.warn_once(op.db, admin_chat_id=ADMIN_CHAT_ID)
