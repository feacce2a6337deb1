"""PayoutService against FakeSmartCloudPay over HTTP: checks, caps, the row before the call, one payment a reference."""
from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest

from services.payouts import FAILED, REQUESTED, UNKNOWN, PayoutError, PayoutProblem, PayoutService
from services.gateways.smartcloudpay import SmartCloudPayGateway
from services.store.db import execute, fetch_all
from tests.fakes.smartcloudpay import FakeSmartCloudPay

KEY = "sk_test_payouts_51c9"
MERCHANT = "merchant-payouts"
BSC = "0xe24B4Ea27754e92Dd0D25f28e3B6C39707B7fe64"
TRON = "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"
MAX_CENTS, DAILY_CENTS = 10_000, 15_000  # $100 a payout, $150 a day


@pytest.fixture
async def fake():
    async with FakeSmartCloudPay(api_key=KEY, merchant_id=MERCHANT) as server:
        yield server


@pytest.fixture
async def gateway(fake):
    gw = SmartCloudPayGateway(fake.base_url, KEY, MERCHANT, notification_email="ops@example.com", callback_url=None,
                              timeout_seconds=0.5)
    yield gw
    await gw.close()


@pytest.fixture
def service(db, gateway) -> PayoutService:
    return PayoutService(db, gateway, MAX_CENTS, DAILY_CENTS)


async def pay(service: PayoutService, amount: str, reference: str, *, coin: str = "USDT", network: str = "BSC",
              address: str = BSC, actor: int = 503):
    draft = await service.validate(amount, coin, network, address, reference)
    row = await service.request(draft.payload(), actor)
    return await service.execute(row.reference)


async def rows(db) -> list[dict]:
    return [dict(r) for r in await fetch_all(db.reader, "SELECT * FROM payouts ORDER BY id")]


# --- validation ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "problem"), [
    (("abc", "USDT", "BSC", BSC, "R1"), PayoutProblem.AMOUNT),
    (("0", "USDT", "BSC", BSC, "R1"), PayoutProblem.AMOUNT),
    (("-5", "USDT", "BSC", BSC, "R1"), PayoutProblem.AMOUNT),
    (("1e3", "USDT", "BSC", BSC, "R1"), PayoutProblem.AMOUNT),
    (("1.123456789", "USDT", "BSC", BSC, "R1"), PayoutProblem.AMOUNT),
    (("NaN", "USDT", "BSC", BSC, "R1"), PayoutProblem.AMOUNT),
    (("1,000.5", "USDT", "BSC", BSC, "R1"), PayoutProblem.AMOUNT),
    (("0.1", "BNB", "BSC", BSC, "R1"), PayoutProblem.COIN),
    (("5", "BTC", "BTC", BSC, "R1"), PayoutProblem.COIN),
    (("5", "USDT", "SOL", BSC, "R1"), PayoutProblem.NETWORK),
    (("5", "USDC", "TRON", TRON, "R1"), PayoutProblem.PAIR),
    (("5", "USDT", "BSC", TRON, "R1"), PayoutProblem.ADDRESS),
    (("5", "USDT", "TRON", BSC, "R1"), PayoutProblem.ADDRESS),
    (("5", "USDT", "BSC", BSC[:-1], "R1"), PayoutProblem.ADDRESS),
    (("5", "USDT", "BSC", BSC + "<b>", "R1"), PayoutProblem.ADDRESS),
    (("5", "USDT", "BSC", BSC, "a b"), PayoutProblem.REFERENCE),
    (("5", "USDT", "BSC", BSC, "x" * 65), PayoutProblem.REFERENCE),
    (("5", "USDT", "BSC", BSC, "ref/1"), PayoutProblem.REFERENCE),
])
async def test_bad_input_is_refused_before_anything_is_written_or_sent(service, fake, db, args, problem):
    with pytest.raises(PayoutError) as caught:
        await service.validate(*args)
    assert caught.value.problem is problem
    assert await rows(db) == [] and fake.requests == []


async def test_accepted_forms(service):
    draft = await service.validate("12,75", "usdt", "tron", TRON, "WP-2026_01")
    assert (draft.amount, draft.coin, draft.network, draft.usd_cents) == (Decimal("12.75"), "USDT", "TRON", 1275)
    evm = await service.validate("0.000001", "USDC", "evm", BSC, "r" * 64)  # Smart CloudPay's own code for ETH
    assert evm.network == "ETH" and evm.usd_cents == 1  # a fraction of a cent counts as a whole one


# --- the payout ------------------------------------------------------------------------------------------------

async def test_a_payout_is_sent_with_the_documented_fields_and_stored(service, fake, db):
    payout = await pay(service, "25.5", "WP-1")
    sent = fake.requests_to("/payout/execute")
    assert len(sent) == 1
    assert sent[0].json == {"recipient_address": BSC, "amount": 25.5, "currency": "USDT", "chain": "bsc",
                            "reference_wp": "WP-1"}
    assert '"amount": 25.5,' in sent[0].text  # a JSON number written from the Decimal, not a string
    assert fake.payouts["WP-1"]["amount"] == "25.5"
    assert (payout.status, payout.amount, payout.usd_cents, payout.actor_id) == ("processing", Decimal("25.5"), 2550,
                                                                                  503)
    [row] = await rows(db)
    assert (row["reference"], row["amount"], row["coin"], row["network"], row["address"], row["status"]) == (
        "WP-1", "25.5", "USDT", "BSC", BSC, "processing")


async def test_tron_and_eth_use_the_gateway_chain_codes(service, fake):
    await pay(service, "1", "T1", network="TRON", address=TRON)
    await pay(service, "1", "E1", coin="DAI", network="ETH")
    assert [r.json["chain"] for r in fake.requests_to("/payout/execute")] == ["tron", "evm"]


async def test_the_row_is_written_before_the_gateway_is_asked(service, gateway):
    seen = []
    original = gateway.execute_payout

    async def spy(**kwargs):
        seen.append(await service.status(kwargs["reference"]))
        return await original(**kwargs)

    gateway.execute_payout = spy
    await pay(service, "5", "BEFORE")
    assert [(p.reference, p.status) for p in seen] == [("BEFORE", REQUESTED)]


async def test_a_used_reference_is_refused(service, fake):
    await pay(service, "5", "WP-1")
    for amount in ("5", "6"):
        with pytest.raises(PayoutError) as caught:
            await service.validate(amount, "USDT", "BSC", BSC, "WP-1")
        assert caught.value.problem is PayoutProblem.DUPLICATE
    assert len(fake.payouts) == 1


# --- caps ----------------------------------------------------------------------------------------------------------

async def test_the_per_payout_cap(service, fake):
    await service.validate("100", "USDT", "BSC", BSC, "AT-CAP")
    with pytest.raises(PayoutError) as caught:
        await service.validate("100.01", "USDT", "BSC", BSC, "OVER")
    assert caught.value.problem is PayoutProblem.OVER_MAX
    assert caught.value.details == {"usd": 10001, "limit": 10000}
    assert fake.requests == []


async def test_the_daily_cap_counts_todays_payouts(service, fake, db):
    await pay(service, "100", "D1")
    draft = await service.validate("50", "USDT", "BSC", BSC, "D2")
    assert draft.today_cents == 10_000
    with pytest.raises(PayoutError) as caught:
        await service.validate("50.01", "USDT", "BSC", BSC, "D3")
    assert caught.value.problem is PayoutProblem.OVER_DAILY
    assert caught.value.details == {"usd": 5001, "used": 10_000, "limit": 15_000}
    # Yesterday's payouts (UTC) no longer count.
    async with db.transaction() as tx:
        await execute(tx, "UPDATE payouts SET created_at = created_at - 86400")
    await service.validate("100", "USDT", "BSC", BSC, "D3")
    assert len(fake.payouts) == 1


async def test_refused_payouts_do_not_count_but_unknown_ones_do(service, fake):
    fake.fail_next("/payout/execute", status=400, body=json.dumps({"success": False, "message": "insufficient funds"}),
                   content_type="application/json")
    refused = await pay(service, "100", "REFUSED")
    assert refused.status == FAILED and "insufficient funds" in (refused.detail or "")
    await service.validate("100", "USDT", "BSC", BSC, "NEXT")  # the refusal left the day's cap untouched
    fake.fail_next("/payout/execute", status=502)
    unknown = await pay(service, "100", "LOST")
    assert unknown.status == UNKNOWN
    with pytest.raises(PayoutError) as caught:  # it may have been paid: it counts
        await service.validate("50.01", "USDT", "BSC", BSC, "NEXT")
    assert caught.value.problem is PayoutProblem.OVER_DAILY


async def test_the_caps_are_checked_again_when_confirmed(service, fake):
    first = await service.validate("100", "USDT", "BSC", BSC, "C1")
    second = await service.validate("100", "USDT", "BSC", BSC, "C2")  # both fit when asked...
    await service.execute((await service.request(first.payload(), 503)).reference)
    with pytest.raises(PayoutError) as caught:  # ...but not both when confirmed
        await service.request(second.payload(), 503)
    assert caught.value.problem is PayoutProblem.OVER_DAILY
    assert list(fake.payouts) == ["C1"]


async def test_concurrent_confirmations_cannot_both_fit_under_the_daily_cap(service, fake, db):
    drafts = [await service.validate("80", "USDT", "BSC", BSC, f"P{i}") for i in range(4)]
    results = await asyncio.gather(*(service.request(d.payload(), 503) for d in drafts), return_exceptions=True)
    written = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, PayoutError)]
    assert len(written) == 1 and len(refused) == 3
    assert all(r.problem is PayoutProblem.OVER_DAILY for r in refused)
    assert len(await rows(db)) == 1


# --- failures and retries ----------------------------------------------------------------------------------------

async def test_a_502_leaves_an_unknown_row_and_a_retry_pays_once(service, fake, db):
    fake.fail_next("/payout/execute", status=502)
    payout = await pay(service, "40", "WP-502")
    assert payout.status == UNKNOWN and "502" in (payout.detail or "")
    [row] = await rows(db)
    assert (row["reference"], row["status"]) == ("WP-502", UNKNOWN)
    assert fake.payouts == {}

    # The same command again is a retry of the same row, not a new payout.
    draft = await service.validate("40", "USDT", "BSC", BSC, "WP-502")
    assert draft.retry and draft.today_cents == 0
    retried = await service.execute((await service.request(draft.payload(), 503)).reference)
    assert retried.status == "processing" and retried.id == payout.id
    assert len(await rows(db)) == 1 and list(fake.payouts) == ["WP-502"]

    # Once the gateway has it, the reference is taken: it is never sent again.
    with pytest.raises(PayoutError) as caught:
        await service.validate("40", "USDT", "BSC", BSC, "WP-502")
    assert caught.value.problem is PayoutProblem.DUPLICATE
    assert (await service.execute("WP-502")).status == "processing"
    assert len(fake.requests_to("/payout/execute")) == 2


async def test_a_lost_answer_is_retried_without_paying_twice(service, fake):
    # The gateway makes the payout but the answer comes too late for our timeout.
    fake.fail_next("/payout/execute", status=None, delay=1.0)
    payout = await pay(service, "30", "WP-SLOW")
    assert payout.status == UNKNOWN and "timed out" in (payout.detail or "")
    for _ in range(50):
        if "WP-SLOW" in fake.payouts:
            break
        await asyncio.sleep(0.05)
    assert list(fake.payouts) == ["WP-SLOW"]
    draft = await service.validate("30", "USDT", "BSC", BSC, "WP-SLOW")
    assert draft.retry
    row = await service.request(draft.payload(), 503)
    results = await asyncio.gather(*(service.execute(row.reference) for _ in range(3)))
    assert {r.status for r in results} == {"processing"}
    assert len(fake.payouts) == 1


async def test_a_retry_must_repeat_the_same_payout(service, fake):
    fake.fail_next("/payout/execute", status=502)
    await pay(service, "40", "WP-X")
    with pytest.raises(PayoutError) as caught:
        await service.validate("41", "USDT", "BSC", BSC, "WP-X")
    assert caught.value.problem is PayoutProblem.DUPLICATE


# --- status ------------------------------------------------------------------------------------------------------

async def test_refresh_reads_the_gateway_status(service, fake):
    await pay(service, "10", "WP-R")
    fake.set_payout_status("WP-R", "completed", tx_hash="0xfeed")
    refreshed = await service.refresh("WP-R")
    assert (refreshed.status, refreshed.tx_hash, refreshed.is_final) == ("completed", "0xfeed", True)
    assert (await service.status("WP-R")).status == "completed"
    assert fake.requests_to("/payout/status")[-1].json == {"reference_wp": "WP-R"}


async def test_refresh_of_a_payout_the_gateway_does_not_know_keeps_it_unknown(service, fake):
    fake.fail_next("/payout/execute", status=502)
    await pay(service, "10", "WP-N")
    refreshed = await service.refresh("WP-N")
    assert refreshed.status == UNKNOWN and "does not know" in (refreshed.detail or "")


async def test_history_is_newest_first_and_unknown_references_are_reported(service):
    await pay(service, "1", "H1")
    await pay(service, "2", "H2")
    assert [p.reference for p in await service.history()] == ["H2", "H1"]
    with pytest.raises(PayoutError) as caught:
        await service.status("nope")
    assert caught.value.problem is PayoutProblem.NOT_FOUND
