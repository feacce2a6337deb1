"""The operator API's contract over real HTTP: keys, reads, charges, refunds, links, errors."""
from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from services.store.db import fetch_all, fetch_value
from tests.fakes.bot_api import FakeBotAPI
from tests.harness import ADMIN_CHAT_ID
from tests.operator import give, operator_api

ANNA = 5001
BORIS = 5002
STAFF = 501
ROOT = Path(__file__).resolve().parent.parent


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env={"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"})


def error_code(body: object) -> str:
    assert isinstance(body, dict) and set(body["error"]) == {"code", "message"}, body
    return str(body["error"]["code"])


# --- keys ---

async def test_without_any_key_the_api_is_not_there(api: FakeBotAPI, database_url: str) -> None:
    async with operator_api(api, database_url, OPERATOR_API_KEY="") as op:
        await give(op.db, ANNA, 500)
        for path in ("/api/v1/users/5001", "/api/v1/openapi.json", "/api/v1/nothing"):
            status, body, _ = await op.call("GET", path)
            assert status == 404 and error_code(body) == "not_found"
        assert (await op.call("GET", "/healthz"))[0] == 200


async def test_a_missing_or_unknown_key_gets_401_and_a_read_only_key_cannot_write(api: FakeBotAPI,
                                                                                  database_url: str) -> None:
    async with operator_api(api, database_url) as op:
        await give(op.db, ANNA, 500)
        assert (await op.call("GET", "/api/v1/users/5001", key=None))[0] == 401
        status, body, _ = await op.call("GET", "/api/v1/users/5001", key="tk_not-a-key")
        assert status == 401 and error_code(body) == "unauthorized"
        created = cli(database_url, "api-keys", "create", "reports", "--read-only")
        assert created.returncode == 0, created.stderr
        reader = created.stdout.strip().splitlines()[-1]
        assert (await op.call("GET", "/api/v1/users/5001", key=reader))[0] == 200
        status, body, _ = await op.call(
            "POST", "/api/v1/users/5001/charges", json_body={"amount": "1.00"}, idempotency_key="k1", key=reader)
        assert status == 403 and error_code(body) == "forbidden"
        assert await fetch_value(op.db.reader, "SELECT COUNT(*) FROM charges") == 0


async def test_cli_keys_are_stored_as_hashes_work_at_once_and_die_at_once(api: FakeBotAPI, database_url: str,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with operator_api(api, database_url, OPERATOR_API_KEY="") as op:
        await give(op.db, ANNA, 500)
        created = cli(database_url, "api-keys", "create", "shop")
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip().splitlines()[-1]
        assert key.startswith("tk_") and len(key) > 40
        assert (await op.call("GET", "/api/v1/users/5001", key=key))[0] == 200
        # Only the hash is kept; /audit knows the key was made, not what it is.
        rows = [*await fetch_all(op.db.reader, "SELECT * FROM api_keys"),
                *await fetch_all(op.db.reader, "SELECT * FROM admin_actions")]
        dump = "\n".join(" ".join(str(v) for v in row) for row in rows)
        assert key not in dump and key[3:20] not in dump
        assert "api_key_create" in dump and "shop" in dump
        listed = cli(database_url, "api-keys", "list")
        assert "shop" in listed.stdout and "active" in listed.stdout and key not in listed.stdout
        assert cli(database_url, "api-keys", "create", "shop").returncode == 1  # names are never reused

        revoked = cli(database_url, "api-keys", "revoke", "shop")
        assert revoked.returncode == 0, revoked.stderr
        # The next request is refused: with no key left, the API is gone altogether.
        assert (await op.call("GET", "/api/v1/users/5001", key=key))[0] == 404
        cli(database_url, "api-keys", "create", "other")
        status, body, _ = await op.call("GET", "/api/v1/users/5001", key=key)
        assert status == 401
        assert "api_key_revoke" in "\n".join(
            str(r[0]) for r in await fetch_all(op.db.reader, "SELECT action FROM admin_actions"))
    assert key not in caplog.text


async def test_past_the_rate_limit_a_key_gets_429_with_retry_after(api: FakeBotAPI, database_url: str) -> None:
    async with operator_api(api, database_url, API_RATE_LIMIT="5") as op:
        await give(op.db, ANNA, 500)
        answers = [await op.call("GET", "/api/v1/users/5001") for _ in range(8)]
        statuses = [a[0] for a in answers]
        assert statuses[:5] == [200] * 5 and 429 in statuses[5:]
        limited = next(a for a in answers if a[0] == 429)
        assert error_code(limited[1]) == "rate_limited" and int(limited[2]["Retry-After"]) >= 1
        await asyncio.sleep(1.1)
        assert (await op.call("GET", "/api/v1/users/5001"))[0] == 200


# --- reads ---

async def test_a_user_reads_with_live_balance_in_dollars_and_cents(api: FakeBotAPI, database_url: str) -> None:
    async with operator_api(api, database_url) as op:
        await give(op.db, ANNA, 315, username="anna")
        await give(op.db, ANNA, 1000, test=True, username="anna")  # sandbox money: not the API's
        status, body, _ = await op.call("GET", "/api/v1/users/5001")
        assert status == 200
        assert body == {"user_id": ANNA, "external_id": None, "username": "anna", "language": "en",
                        "balance": "3.15", "balance_cents": 315, "currency": "USD",
                        "created_at": body["created_at"]}
        for path in ("/api/v1/users/999", "/api/v1/users/abc", "/api/v1/users/99999999999999999999999"):
            status, body, _ = await op.call("GET", path)
            assert status == 404 and error_code(body) == "user_not_found"


async def test_the_ledger_pages_newest_first_with_running_balances(api: FakeBotAPI, database_url: str) -> None:
    async with operator_api(api, database_url) as op:
        await give(op.db, ANNA, 1000)
        await op.charge(ANNA, "2.00", "a", description="SMS number", reference="order-1")
        await op.charge(ANNA, "3.00", "b", description="VPN month")
        status, page, _ = await op.call("GET", "/api/v1/users/5001/ledger?limit=2")
        assert status == 200
        assert [(ln["kind"], ln["amount"], ln["amount_cents"], ln["balance_after_cents"]) for ln in page["data"]] == [
            ("charge", "-3.00", -300, 500), ("charge", "-2.00", -200, 800)]
        assert page["data"][1]["reference"] == "order-1" and page["data"][1]["description"] == "SMS number"
        assert page["data"][1]["charge_id"].startswith("ch_")
        status, rest, _ = await op.call("GET", f"/api/v1/users/5001/ledger?limit=2&cursor={page['next_cursor']}")
        assert [ln["kind"] for ln in rest["data"]] == ["adjustment"] and rest["next_cursor"] is None
        assert rest["data"][0]["balance_after_cents"] == 1000
        for query in ("limit=0", "limit=101", "limit=x", "cursor=abc"):
            assert (await op.call("GET", f"/api/v1/users/5001/ledger?{query}"))[0] == 422


# --- charges ---

async def test_a_charge_takes_money_once_per_idempotency_key(api: FakeBotAPI, database_url: str) -> None:
    async with operator_api(api, database_url) as op:
        await give(op.db, ANNA, 515)
        first = await op.charge(ANNA, "2.00", "order-77", description="SMS number", reference="77")
        assert first[0] == 201
        assert first[1] == {"charge_id": first[1]["charge_id"], "amount": "2.00", "amount_cents": 200,
                            "balance": "3.15", "balance_cents": 315, "description": "SMS number", "reference": "77",
                            "created_at": first[1]["created_at"]}
        again = await op.charge(ANNA, "2.00", "order-77", description="SMS number", reference="77")
        assert again[0] == 201 and again[1] == first[1]
        status, body, _ = await op.charge(ANNA, "2.50", "order-77", description="SMS number", reference="77")
        assert status == 409 and error_code(body) == "idempotency_conflict"
        status, body, _ = await op.call("POST", "/api/v1/users/5001/charges", json_body={"amount": "1.00"})
        assert status == 400 and error_code(body) == "idempotency_key_required"
        assert (await op.call("GET", "/api/v1/users/5001"))[1]["balance_cents"] == 315


async def test_a_charge_larger_than_the_balance_gets_402_and_changes_nothing(api: FakeBotAPI,
                                                                            database_url: str) -> None:
    async with operator_api(api, database_url) as op:
        await give(op.db, ANNA, 300)
        await give(op.db, ANNA, 5000, test=True)  # test money never pays for anything
        status, body, _ = await op.charge(ANNA, "3.01", "big")
        assert status == 402 and error_code(body) == "insufficient_funds"
        assert body["balance"] == "3.00" and body["balance_cents"] == 300
        assert await fetch_value(op.db.reader, "SELECT COUNT(*) FROM ledger WHERE kind = 'charge'") == 0
        assert (await op.charge(BORIS, "1.00", "nobody"))[0] == 404
        assert (await op.charge(ANNA, "3.00", "all"))[0] == 201


@pytest.mark.parametrize("amount", ["0", "0.00", "-1.00", "1.001", "1e2", "1E2", " 1.00", "1,00", "", "abc", None,
                                    True, [], {}, 1.005, -1, 0, "NaN", "Infinity", "1234567890", "١٠"])
async def test_a_malformed_amount_gets_422_and_changes_nothing(api: FakeBotAPI, database_url: str,
                                                               amount: object) -> None:
    async with operator_api(api, database_url) as op:
        await give(op.db, ANNA, 100_000)
        status, body, _ = await op.charge(ANNA, amount, "k")
        assert status == 422 and error_code(body) == "invalid_amount"
        assert await fetch_value(op.db.reader, "SELECT COUNT(*) FROM charges") == 0


async def test_amounts_may_be_numbers_with_at_most_two_decimals(api: FakeBotAPI, database_url: str) -> None:
    async with operator_api(api, database_url) as op:
        await give(op.db, ANNA, 1000)
        assert (await op.call("POST", "/api/v1/users/5001/charges", data='{"amount": 2.5}',
                              idempotency_key="n1"))[1]["amount_cents"] == 250
        assert (await op.charge(ANNA, 1, "n2"))[1]["amount_cents"] == 100


# --- refunds ---

async def test_refunds_give_back_at_most_what_was_charged(api: FakeBotAPI, database_url: str) -> None:
    async with operator_api(api, database_url) as op:
        await give(op.db, ANNA, 500)
        charge = (await op.charge(ANNA, "2.00", "c1", description="VPN"))[1]
        refunds = f"/api/v1/charges/{charge['charge_id']}/refunds"
        status, part, _ = await op.call("POST", refunds, json_body={"amount": "0.50"}, idempotency_key="r1")
        assert status == 201 and part["amount"] == "0.50" and part["balance_cents"] == 350
        assert part["refund_id"].startswith("re_") and part["charge_id"] == charge["charge_id"]
        assert (await op.call("POST", refunds, json_body={"amount": "0.50"}, idempotency_key="r1"))[1] == part
        status, body, _ = await op.call("POST", refunds, json_body={"amount": "1.51"}, idempotency_key="r2")
        assert status == 422 and error_code(body) == "refund_exceeds_charge"
        status, rest, _ = await op.call("POST", refunds, idempotency_key="r3")  # no body: what is left
        assert status == 201 and rest["amount_cents"] == 150 and rest["balance_cents"] == 500
        assert (await op.call("POST", refunds, idempotency_key="r4"))[0] == 422
        status, body, _ = await op.call("POST", "/api/v1/charges/ch_nope/refunds", idempotency_key="r5")
        assert status == 404 and error_code(body) == "charge_not_found"
        status, shown, _ = await op.call("GET", f"/api/v1/charges/{charge['charge_id']}")
        assert status == 200 and shown["refunded_cents"] == 200
        assert [r["amount_cents"] for r in shown["refunds"]] == [50, 150]
        assert (await op.call("GET", "/api/v1/charges/ch_nope"))[0] == 404


# --- customers hear of it ---

async def test_the_customer_is_told_of_a_charge_and_a_refund_in_their_language(api: FakeBotAPI,
                                                                              database_url: str) -> None:
    async with operator_api(api, database_url) as op:
        await give(op.db, ANNA, 515)
        await op.h.send(ANNA, "/start", language_code="ru")
        charge = (await op.charge(ANNA, "2.00", "c1", description="Номер для SMS"))[1]
        await op.call("POST", f"/api/v1/charges/{charge['charge_id']}/refunds", idempotency_key="r1")
        await op.h.deliver()
        texts = op.h.texts(ANNA)
        # Money the Russian way (8aca696): "2,00 $" with a no-break space.
        assert "−2,00\xa0$ · Номер для SMS · Баланс: 3,15\xa0$" in texts
        assert any(t.startswith("↩️ Возврат +2,00\xa0$") and "5,15\xa0$" in t for t in texts)
        await op.h.send(ANNA, "/history", language_code="ru")
        assert "Номер для SMS" in op.h.last_text(ANNA) and "Списания и возвраты" in op.h.last_text(ANNA)


async def test_notify_charges_false_keeps_charges_quiet(api: FakeBotAPI, database_url: str) -> None:
    async with operator_api(api, database_url, NOTIFY_CHARGES="false") as op:
        await give(op.db, ANNA, 515)
        await op.charge(ANNA, "2.00", "c1", description="quiet")
        await op.h.deliver()
        assert not any("quiet" in t for t in op.h.texts(ANNA))


async def test_staff_see_the_latest_charges_in_user_and_key_changes_in_audit(api: FakeBotAPI,
                                                                             database_url: str) -> None:
    api.chat_admins[ADMIN_CHAT_ID] = [STAFF]
    async with operator_api(api, database_url) as op:
        await give(op.db, ANNA, 515)
        charge = (await op.charge(ANNA, "2.00", "c1", description="SMS number", reference="ord-9"))[1]
        await op.h.send(STAFF, f"/user {ANNA}", chat_id=ADMIN_CHAT_ID)
        card = op.h.last_text(ADMIN_CHAT_ID)
        assert charge["charge_id"] in card and "ord-9" in card and "SMS number" in card and "$2.00" in card
        key = cli(database_url, "api-keys", "create", "shop").stdout.strip().splitlines()[-1]
        cli(database_url, "api-keys", "revoke", "shop")
        await op.h.send(STAFF, "/audit", chat_id=ADMIN_CHAT_ID)
        audit = op.h.last_text(ADMIN_CHAT_ID)
        assert "created the operator API key shop (full access)" in audit
        assert "revoked the operator API key shop" in audit and key not in audit


async def test_text_the_database_cannot_hold_gets_404_or_422_never_503(api: FakeBotAPI, database_url: str) -> None:
    """A NUL or an unpaired surrogate (JSON "\\ud800", %00 in the URL) is refused like any bad input. PostgreSQL's
    text cannot hold them, so there they used to reach the store and come back as 503 'try again'."""
    async with operator_api(api, database_url) as op:
        await give(op.db, ANNA, 1000)
        for method, path, body, status, code in [
            ("GET", "/api/v1/users?external_id=%00", None, 404, "user_not_found"),
            ("GET", "/api/v1/users?external_id=a%00b", None, 404, "user_not_found"),
            ("GET", "/api/v1/charges/ch_%00", None, 404, "charge_not_found"),
            ("POST", "/api/v1/charges/ch_%00/refunds", None, 404, "charge_not_found"),
            ("POST", "/api/v1/links", '{"external_id": "shop-\\ud800"}', 422, "invalid_field"),
            ("POST", "/api/v1/users/5001/charges", '{"amount": "1.00", "description": "\\ud800"}', 422,
             "invalid_field"),
            ("POST", "/api/v1/users/5001/charges", '{"amount": "1.00", "reference": "\\udfff"}', 422,
             "invalid_field"),
        ]:
            got, answer, _ = await op.call(method, path, data=body, idempotency_key="k")
            assert (got, error_code(answer)) == (status, code), (method, path, body, answer)
        assert await fetch_value(op.db.reader, "SELECT COUNT(*) FROM charges") == 0
        assert await fetch_value(op.db.reader, "SELECT COUNT(*) FROM account_links") == 0
