"""/gateway, /payout and /payouts in the admin chat: the real dispatcher, the fake gateways over HTTP."""
from __future__ import annotations


import pytest

from handlers.admin.gateway import PayoutCb
from services.gateways.cryptomus import CryptomusGateway
from services.gateways.smartcloudpay import SmartCloudPayGateway
from services.gateways.smsonline import SMSOnlineGateway
from services.store.db import fetch_all
from tests.fakes.bot_api import FakeBotAPI
from tests.fakes.cryptomus import FakeCryptomus
from tests.fakes.smartcloudpay import FakeSmartCloudPay
from tests.fakes.smsonline import FakeSMSOnline
from tests.harness import ADMIN_CHAT_ID, Harness

CHAT_ADMIN, LISTED, OTHER_LISTED, MEMBER = 501, 503, 505, 502
KEY, MERCHANT = "sk_test_admin_gw_77", "merchant-admin-gw"
BSC = "0xe24B4Ea27754e92Dd0D25f28e3B6C39707B7fe64"


@pytest.fixture
async def scp():
    async with FakeSmartCloudPay(api_key=KEY, merchant_id=MERCHANT) as server:
        yield server


@pytest.fixture
async def h(api: FakeBotAPI, database_url: str, scp: FakeSmartCloudPay):
    api.chat_admins[ADMIN_CHAT_ID] = [CHAT_ADMIN]
    gateway = SmartCloudPayGateway(scp.base_url, KEY, MERCHANT, notification_email="ops@example.com",
                                   callback_url=None, timeout_seconds=0.5)
    harness = await Harness.start(
        api, database_url, gateway=gateway, ADMIN_USER_IDS=f"{LISTED},{OTHER_LISTED}",
        PAYMENT_GATEWAY="smartcloudpay", SMARTCLOUDPAY_API_URL=scp.base_url, SMARTCLOUDPAY_API_KEY=KEY,
        SMARTCLOUDPAY_MERCHANT_ID=MERCHANT, SMARTCLOUDPAY_NOTIFY_EMAIL="ops@example.com",
        PAYOUT_MAX_USD="100", PAYOUT_DAILY_MAX_USD="150")
    yield harness
    await harness.close()


async def say(h: Harness, user: int, text: str) -> str:
    await h.send(user, text, chat_id=ADMIN_CHAT_ID)
    return h.last_text(ADMIN_CHAT_ID)


def payout_command(amount: str = "25", reference: str = "WP-1") -> str:
    return f"/payout {amount} USDT BSC {BSC} {reference}"


async def payouts_in_db(h: Harness) -> list[dict]:
    return [dict(r) for r in await fetch_all(h.app.db.reader, "SELECT * FROM payouts ORDER BY id")]


# --- /gateway ----------------------------------------------------------------------------------------------------

async def test_gateway_shows_balances_wallets_and_health(h, scp):
    text = await say(h, LISTED, "/gateway")
    assert "Gateway smartcloudpay" in text
    assert "Prepaid API credits: 100" in text
    assert "BNB on BSC: 1.5" in text and "USDT on TRON: 0" in text
    for wallet in scp.wallets:
        assert wallet["address"] in text
    assert "Last successful call: 20" in text and "Last error: none" in text
    assert {r.query["network"] for r in scp.requests_to("/payout/balance/chain")} == {"BSC", "TRON"}


async def test_a_failing_balance_call_shows_unavailable_with_the_reason(h, scp):
    scp.fail_next("/payout/balance/prepaid", status=502)
    text = await say(h, CHAT_ADMIN, "/gateway")
    assert "Prepaid API credits: unavailable (Smart CloudPay prepaid balance: HTTP 502: Bad Gateway)" in text
    assert "BNB on BSC: 1.5" in text  # the others still answer
    assert "Last error: 20" in text and "HTTP 502" in text.split("Last error:")[1]
    assert "Traceback" not in text


async def test_gateway_on_smsonline_shows_the_account_balance(api, database_url):
    async with FakeSMSOnline(user_id="op-1", api_key="sms-key") as fake:
        fake.balance, fake.total_charges = 1234, 4500
        gateway = SMSOnlineGateway(fake.base_url, "op-1", "sms-key", timeout_seconds=0.5)
        h = await Harness.start(api, database_url, gateway=gateway, ADMIN_USER_IDS=str(LISTED))
        try:
            text = await say(h, LISTED, "/gateway")
            assert "Gateway smsonline" in text
            assert "Account balance: $12.34 (top-ups so far $45.00, discount -10%)" in text
            assert "Last error: none" in text
            fake.fail_next("/balance", status=401, body='{"ok": false, "errorMessage": "bad key"}',
                           content_type="application/json")
            text = await say(h, LISTED, "/gateway")
            assert "Account balance: unavailable (SMSOnline balance: user verification failed" in text
            assert "/payout" not in text
            assert "Payouts need Smart CloudPay" in await say(h, LISTED, payout_command())
        finally:
            await h.close()


async def test_gateway_on_cryptomus_shows_the_wallets_that_hold_something(api, database_url):
    async with FakeCryptomus(merchant_id="m-1", payment_key="pay-key") as fake:
        fake.merchant_balances[0].update(balance="12.50000000", balance_usd="12.50")
        fake.user_balances[0].update(balance="3.00000000", balance_usd="3.00")
        gateway = CryptomusGateway(fake.base_url, "m-1", "pay-key", callback_url=None, timeout_seconds=2)
        h = await Harness.start(api, database_url, gateway=gateway, ADMIN_USER_IDS=str(LISTED))
        try:
            text = await say(h, LISTED, "/gateway")
            assert "Gateway cryptomus" in text
            assert "Merchant USDT: 12.5 (≈ $12.50)" in text and "Personal USDT: 3 (≈ $3.00)" in text
            assert "BTC" not in text  # empty wallets are left out
            assert fake.requests_to("/v1/balance")
        finally:
            await h.close()


async def test_sandbox_shows_only_its_health(api, database_url):
    h = await Harness.start(api, database_url, ADMIN_USER_IDS=str(LISTED))
    try:
        text = await say(h, LISTED, "/gateway")
        assert text.startswith("🔌 Gateway sandbox") and "no balances" in text
        assert "Last successful call:" in text and "Last error: none" in text
        assert "Payouts need Smart CloudPay" in await say(h, LISTED, payout_command())
        assert "Payouts need Smart CloudPay" in await say(h, LISTED, "/payouts")
    finally:
        await h.close()


# --- /payout -----------------------------------------------------------------------------------------------------

async def test_a_listed_admin_pays_out_after_the_second_tap(h, scp):
    text = await say(h, LISTED, payout_command("25.5"))
    assert "Pay out 25.5 USDT on BSC" in text and BSC in text and "WP-1" in text
    assert "$25.50" in text and "$0.00 of $150.00" in text
    assert scp.payouts == {} and await payouts_in_db(h) == []
    asked = h.last(ADMIN_CHAT_ID)
    confirm_data = asked["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    await h.tap(LISTED, "Confirm", chat_id=ADMIN_CHAT_ID)
    assert list(scp.payouts) == ["WP-1"]
    sent = scp.payouts["WP-1"]
    assert (sent["recipient_address"], sent["amount"], sent["currency"], sent["chain"]) == (BSC, "25.5", "USDT", "bsc")
    result = h.last_text(ADMIN_CHAT_ID)
    assert "Payout WP-1 accepted by Smart CloudPay" in result and "Status: processing" in result
    [row] = await payouts_in_db(h)
    assert (row["actor_id"], row["status"], row["usd_cents"]) == (LISTED, "processing", 2550)
    [audit] = await h.app.db.reader.fetch_all("SELECT action, target, actor_id FROM admin_actions")
    assert tuple(audit) == ("payout", "payout:WP-1", LISTED)
    # The same tap, pressed again (a stale client), can't pay again.
    await h.press(LISTED, confirm_data, message_id=asked["message_id"], chat_id=ADMIN_CHAT_ID)
    assert h.toasts()[-1] == "This was already confirmed or cancelled."
    assert len(scp.requests_to("/payout/execute")) == 1


async def test_a_chat_admin_not_in_admin_user_ids_is_refused(h, scp):
    text = await say(h, CHAT_ADMIN, payout_command())
    assert "Only staff listed in ADMIN_USER_IDS may pay out" in text
    assert h.buttons(h.last(ADMIN_CHAT_ID)) == [] and scp.requests == []


async def test_a_member_gets_the_short_refusal(h, scp):
    assert await say(h, MEMBER, payout_command()) == "⛔ Admins only."
    assert scp.requests == []


@pytest.mark.parametrize("other", [CHAT_ADMIN, OTHER_LISTED])
async def test_only_the_admin_who_asked_can_confirm(h, scp, other):
    await say(h, LISTED, payout_command())
    await h.tap(other, "Confirm", chat_id=ADMIN_CHAT_ID)
    assert h.toasts()[-1] == "Only the admin who asked can confirm this."
    assert scp.payouts == {} and await payouts_in_db(h) == []


async def test_cancel_sends_nothing(h, scp):
    await say(h, LISTED, payout_command())
    await h.tap(LISTED, "Cancel", chat_id=ADMIN_CHAT_ID)
    assert "Cancelled" in h.last_text(ADMIN_CHAT_ID)
    assert scp.payouts == {} and await payouts_in_db(h) == []


async def test_over_the_per_payout_cap_is_refused_before_confirmation(h, scp):
    text = await say(h, LISTED, payout_command("100.01"))
    assert "above the per-payout cap of $100.00" in text
    assert h.buttons(h.last(ADMIN_CHAT_ID)) == [] and scp.requests == []


async def test_over_the_daily_cap_is_refused_before_confirmation(h, scp):
    await say(h, LISTED, payout_command("100", "D1"))
    await h.tap(LISTED, "Confirm", chat_id=ADMIN_CHAT_ID)
    text = await say(h, LISTED, payout_command("60", "D2"))
    assert "$60.00 on top of $100.00 paid out today (UTC) is above the daily cap of $150.00" in text
    assert h.buttons(h.last(ADMIN_CHAT_ID)) == [] and list(scp.payouts) == ["D1"]


async def test_the_caps_are_checked_again_at_the_second_tap(h, scp):
    await say(h, LISTED, payout_command("100", "A"))
    first = h.last(ADMIN_CHAT_ID)
    await say(h, OTHER_LISTED, payout_command("100", "B"))  # both fit while nothing is paid
    second = h.last(ADMIN_CHAT_ID)
    await h.press(LISTED, first["reply_markup"]["inline_keyboard"][0][0]["callback_data"],
                  message_id=first["message_id"], chat_id=ADMIN_CHAT_ID)
    await h.press(OTHER_LISTED, second["reply_markup"]["inline_keyboard"][0][0]["callback_data"],
                  message_id=second["message_id"], chat_id=ADMIN_CHAT_ID)
    assert "above the daily cap of $150.00" in h.api.messages[(ADMIN_CHAT_ID, second["message_id"])]["text"]
    assert list(scp.payouts) == ["A"] and [r["reference"] for r in await payouts_in_db(h)] == ["A"]


async def test_a_used_reference_is_refused(h, scp):
    await say(h, LISTED, payout_command("5", "SAME"))
    await h.tap(LISTED, "Confirm", chat_id=ADMIN_CHAT_ID)
    text = await say(h, LISTED, payout_command("5", "SAME"))
    assert "Reference SAME is already used by another payout" in text
    assert h.buttons(h.last(ADMIN_CHAT_ID)) == [] and len(scp.payouts) == 1


@pytest.mark.parametrize("command", [
    "/payout",
    "/payout 25 USDT",
    f"/payout 25 USDT BSC {BSC}",
    f"/payout 25 USDT BSC {BSC} REF extra",
    f"/payout abc USDT BSC {BSC} REF",
    f"/payout -5 USDT BSC {BSC} REF",
    f"/payout 0.1 BNB BSC {BSC} REF",
    f"/payout 5 USDT SOL {BSC} REF",
    "/payout 5 USDT TRON 0x123 REF",
    f"/payout 5 USDT BSC {BSC} bad/ref",
])
async def test_bad_arguments_get_the_usage_and_change_nothing(h, scp, command):
    text = await say(h, LISTED, command)
    assert "Usage: /payout <amount> <coin> <network> <address> <reference>" in text
    assert f"Example: /payout 25 USDT BSC {BSC} WP-0001" in text
    assert h.buttons(h.last(ADMIN_CHAT_ID)) == [] and scp.requests == [] and await payouts_in_db(h) == []


async def test_a_gateway_failure_is_shown_and_the_same_command_retries_once(h, scp):
    scp.fail_next("/payout/execute", status=502)
    await say(h, LISTED, payout_command("10", "R502"))
    await h.tap(LISTED, "Confirm", chat_id=ADMIN_CHAT_ID)
    text = h.last_text(ADMIN_CHAT_ID)
    assert "Payout R502: no clear answer from Smart CloudPay" in text and "HTTP 502" in text
    assert [r["status"] for r in await payouts_in_db(h)] == ["unknown"] and scp.payouts == {}
    text = await say(h, LISTED, payout_command("10", "R502"))
    assert "Retry payout R502" in text
    await h.tap(LISTED, "Confirm", chat_id=ADMIN_CHAT_ID)
    assert "accepted by Smart CloudPay" in h.last_text(ADMIN_CHAT_ID)
    assert list(scp.payouts) == ["R502"] and len(await payouts_in_db(h)) == 1


# --- /payouts ----------------------------------------------------------------------------------------------------

async def test_payouts_lists_and_refresh_updates_the_status(h, scp):
    assert await say(h, CHAT_ADMIN, "/payouts") == "💸 No payouts yet."
    await say(h, LISTED, payout_command("12", "L1"))
    await h.tap(LISTED, "Confirm", chat_id=ADMIN_CHAT_ID)
    text = await say(h, CHAT_ADMIN, "/payouts")
    assert "L1 12 USDT BSC → 0xe24B4E…B7fe64: processing" in text and "$12.00 of $150.00" in text
    assert h.buttons(h.last(ADMIN_CHAT_ID)) == ["🔄 Refresh status: L1"]
    scp.set_payout_status("L1", "completed", tx_hash="0x" + "ab" * 32)
    await h.tap(CHAT_ADMIN, "Refresh status: L1", chat_id=ADMIN_CHAT_ID)
    assert h.toasts()[-1] == "Payout L1: completed"
    text = h.last_text(ADMIN_CHAT_ID)
    assert "L1 12 USDT BSC → 0xe24B4E…B7fe64: completed" in text and "tx 0xababab…ababab" in text
    assert h.buttons(h.last(ADMIN_CHAT_ID)) == []  # final: nothing left to refresh
    [row] = await payouts_in_db(h)
    assert (row["status"], row["tx_hash"]) == ("completed", "0x" + "ab" * 32)


async def test_refresh_with_the_gateway_down_says_so_and_keeps_the_row(h, scp):
    await say(h, LISTED, payout_command("12", "L2"))
    await h.tap(LISTED, "Confirm", chat_id=ADMIN_CHAT_ID)
    await say(h, LISTED, "/payouts")
    scp.fail_next("/payout/status", status=503)
    await h.tap(LISTED, "Refresh status: L2", chat_id=ADMIN_CHAT_ID)
    assert h.toasts()[-1].startswith("Status unavailable: Smart CloudPay payout status: HTTP 503")
    assert [r["status"] for r in await payouts_in_db(h)] == ["processing"]


async def test_a_forged_refresh_button_is_stale(h, scp):
    await say(h, LISTED, "/payouts")
    message = h.last(ADMIN_CHAT_ID)
    await h.press(LISTED, PayoutCb(id=999).pack(), message_id=message["message_id"], chat_id=ADMIN_CHAT_ID)
    assert h.toasts()[-1] == "This menu is out of date."
    assert scp.requests_to("/payout/status") == []


# --- what the gateways offer beyond payments: Smart CloudPay's IP check and payout list, SMSOnline's coupons -------

async def test_gateway_shows_the_outgoing_ip_to_allow_list_without_sending_the_key(h, scp):
    scp.your_ip = "203.0.113.7"
    text = await say(h, CHAT_ADMIN, "/gateway")
    assert "Our outgoing IP, as Smart CloudPay sees it: 203.0.113.7" in text and "Merchant Dashboard" in text
    (check,) = scp.requests_to("/public/check-ip")
    assert KEY not in str(check.headers) and MERCHANT not in str(check.headers)  # a public call gets no secrets


async def test_gateway_shows_smart_cloudpays_own_payout_list(h, scp):
    text = await say(h, CHAT_ADMIN, "/gateway")
    assert "Smart CloudPay lists no payouts." in text
    scp.payouts["DASHBOARD-7"] = {"reference_wp": "DASHBOARD-7", "status": "completed", "tx_hash": "0xfeedbeef" * 4,
                                  "recipient_address": BSC, "amount": "12.5", "currency": "USDT", "chain": "bsc",
                                  "created_at": 1}
    text = await say(h, CHAT_ADMIN, "/gateway")
    assert "Latest payouts in Smart CloudPay's own list (1, including any made outside the bot):" in text
    assert "DASHBOARD-7 · 12.5 USDT on bsc → 0xe24B4E…B7fe64 · completed tx 0xfeedbe…edbeef" in text
    assert scp.requests_to("/payout/history")[-1].query == {"limit": "5"}


async def test_a_wallet_without_a_network_says_not_reported_not_a_question_mark(h, scp):
    scp.wallets.append({"address": "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"})
    text = await say(h, CHAT_ADMIN, "/gateway")
    assert "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE" in text and "not reported" in text and "?" not in text


async def test_a_failing_ip_check_or_payout_list_is_a_line_not_a_failure(h, scp):
    scp.fail_next("/public/check-ip", status=502)
    scp.fail_next("/payout/history", status=500)
    text = await say(h, CHAT_ADMIN, "/gateway")
    assert "Outgoing IP: unavailable (Smart CloudPay IP check: HTTP 502" in text
    assert "Payouts at Smart CloudPay: unavailable (Smart CloudPay payout history: HTTP 500" in text
    assert "Prepaid API credits: 100" in text and "?" not in text


async def test_smsonline_coupons_show_in_gateway_and_apart_from_the_bots_in_coupons(api, tmp_path):
    coupons = {"SMS-SPRING": {"percentage": 10}, "SMS-OLD": {"percentage": 5, "status": "used", "expired": True}}
    async with FakeSMSOnline(user_id="op-1", api_key="sms-key", coupons=coupons) as fake:
        gateway = SMSOnlineGateway(fake.base_url, "op-1", "sms-key", timeout_seconds=0.5)
        h = await Harness.start(api, tmp_path / "bot.sqlite3", gateway=gateway, ADMIN_USER_IDS=str(LISTED))
        try:
            text = await say(h, LISTED, "/gateway")
            assert "SMSOnline account coupons (2)" in text
            assert "SMS-SPRING · 10% · for crypto · until 20" in text and "· issued" in text
            assert "SMS-OLD · 5% · for crypto" in text and "· used" in text

            await say(h, LISTED, "/coupon_add BOT10 10%")
            listing = await say(h, LISTED, "/coupons")
            bot_part, provider_part = listing.split("SMSOnline account coupons")
            assert "Bot coupons (1)" in bot_part and "BOT10" in bot_part and "SMS-SPRING" not in bot_part
            assert "SMS-SPRING" in provider_part and "BOT10" not in provider_part
            assert "SMSOnline decides what it gives" in provider_part
            assert fake.requests_to("/coupons")[-1].query["apiKey"] == "sms-key"

            fake.fail_next("/coupons", status=500, body="oops")
            listing = await say(h, LISTED, "/coupons")
            assert "BOT10" in listing and "SMSOnline account coupons: unavailable" in listing
        finally:
            await h.close()


async def test_coupons_on_other_gateways_lists_only_the_bots(h, scp):
    await say(h, CHAT_ADMIN, "/coupon_add BOT10 10%")
    listing = await say(h, CHAT_ADMIN, "/coupons")
    assert "Bot coupons (1)" in listing and "SMSOnline" not in listing
