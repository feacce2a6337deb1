"""/user, /credit, /debit and /audit in the admin chat: money moves only on the same admin's second tap, once."""
from __future__ import annotations


import pytest

from services.store import users
from services.store.db import execute, fetch_all, fetch_value
from tests.fakes.bot_api import FakeBotAPI
from tests.harness import ADMIN_CHAT_ID, Harness

ADMIN, OTHER_ADMIN, USER = 501, 502, 555
CHAT = ADMIN_CHAT_ID


async def start(api: FakeBotAPI, database_url: str, **env: str) -> Harness:
    api.chat_admins[ADMIN_CHAT_ID] = [ADMIN, OTHER_ADMIN]
    h = await Harness.start(api, database_url, **env)
    await h.send(USER, "/start", username="anna", first_name="Anna")
    return h


@pytest.fixture
async def h(api: FakeBotAPI, database_url: str):
    harness = await start(api, database_url)
    yield harness
    await harness.close()


async def admin_says(h: Harness, text: str, admin: int = ADMIN) -> str:
    await h.send(admin, text, chat_id=CHAT, username="boss" if admin == ADMIN else "deputy")
    return h.last_text(CHAT)


async def balance(h: Harness, user_id: int = USER) -> int:
    user = await users.get(h.app.db.reader, user_id)
    assert user is not None
    return user.balance_cents


async def count(h: Harness, sql: str) -> int:
    return int(await fetch_value(h.app.db.reader, sql, ()))


async def snapshot(h: Harness) -> tuple[int, int, int]:
    """Balance, ledger lines and audit rows: what "nothing changed" is checked against."""
    return (await balance(h), await count(h, "SELECT COUNT(*) FROM ledger"),
            await count(h, "SELECT COUNT(*) FROM admin_actions"))


async def pay(h: Harness, cents: int) -> int:
    deposit = await h.app.topup.create_deposit(user_id=USER, chat_id=USER, coin="USDT", network="TRON",
                                               amount_cents=cents, coupon_code=None)
    await h.app.topup.simulate_payment(USER, deposit.id)
    return deposit.id


# --- /user ---

async def test_user_card_by_id_and_by_username(h: Harness) -> None:
    deposit_id = await pay(h, 2500)
    await h.app.topup.create_deposit(user_id=USER, chat_id=USER, coin="BTC", network="BTC", amount_cents=1000,
                                     coupon_code=None)
    for query in ("555", "@anna", "@ANNA"):
        text = await admin_says(h, f"/user {query}")
        assert "Anna" in text and "@anna" in text and "id 555" in text
        assert "Balance: $25.00" in text
        assert f"#{deposit_id}" in text and "$25.00 · USDT/TRON · ✅ Paid" in text
        assert "BTC/BTC · ⏳ Waiting for payment" in text
        assert "+$25.00 · deposit" in text


async def test_user_card_of_a_new_user_says_there_is_nothing_yet(h: Harness) -> None:
    text = await admin_says(h, "/user 555")
    assert "Balance: $0.00" in text and "No deposits yet." in text and "No ledger lines yet." in text


@pytest.mark.parametrize("query", ["777", "@nobody", "nobody", "99999999999999999999999"])
async def test_unknown_user_is_not_found(h: Harness, query: str) -> None:
    assert "⚠️ No user" in await admin_says(h, f"/user {query}")


@pytest.mark.parametrize("text", ["/user", "/user 555 556"])
async def test_user_without_one_argument_gets_usage(h: Harness, text: str) -> None:
    reply = await admin_says(h, text)
    assert reply.startswith("Usage: /user") and "Example:" in reply


async def test_user_card_shows_only_the_last_5_deposits_and_10_ledger_lines(h: Harness) -> None:
    for _ in range(12):
        await pay(h, 100)
    text = await admin_says(h, "/user 555")
    assert text.count("USDT/TRON") == 5 and "#12 ·" in text and "#7 ·" not in text
    assert text.count("· deposit ·") == 10


# --- /credit: the happy path and the second tap ---

async def test_credit_is_applied_once_on_confirm_with_ledger_audit_and_a_note_to_the_user(h: Harness) -> None:
    reply = await admin_says(h, "/credit @anna 5 refund for order 17")
    assert "Credit $5.00 to @anna (id 555)" in reply and "$0.00 → $5.00" in reply and "refund for order 17" in reply
    assert await snapshot(h) == (0, 0, 0)  # asking changes nothing

    await h.tap(ADMIN, "Confirm", chat_id=CHAT, username="boss")
    assert h.last_text(CHAT) == "✅ Credited $5.00 to @anna (id 555): new balance $5.00."
    assert await balance(h) == 500
    lines = await fetch_all(h.app.db.reader, "SELECT * FROM ledger WHERE user_id = ?", (USER,))
    assert [(r["amount_cents"], r["kind"], r["note"], r["actor_id"]) for r in lines] == [
        (500, "adjustment", "refund for order 17", ADMIN)]
    audit = await fetch_all(h.app.db.reader, "SELECT * FROM admin_actions", ())
    assert [(r["actor_id"], r["actor_name"], r["action"], r["target"], r["reason"]) for r in audit] == [
        (ADMIN, "@boss", "credit", "user:555", "refund for order 17")]
    assert await users.balance_mismatches(h.app.db.reader) == []
    await h.deliver()  # the note goes through the outbox, queued with the adjustment
    told = h.last_text(USER)
    assert "increased by $5.00" in told and "refund for order 17" in told and "$5.00" in told


async def test_the_same_confirm_tapped_twice_moves_money_once(h: Harness) -> None:
    await admin_says(h, "/credit 555 5 goodwill")
    ask = h.last(CHAT)
    await h.tap(ADMIN, "Confirm", chat_id=CHAT)
    confirm_data = next(b["callback_data"] for row in ask["reply_markup"]["inline_keyboard"] for b in row
                        if "Confirm" in b["text"])
    await h.press(ADMIN, confirm_data, message_id=ask["message_id"], chat_id=CHAT)
    assert h.toasts()[-1] == "This was already confirmed or cancelled."
    assert await balance(h) == 500
    assert await count(h, "SELECT COUNT(*) FROM ledger") == 1
    assert await count(h, "SELECT COUNT(*) FROM admin_actions") == 1


async def test_cancel_changes_nothing_and_confirm_after_cancel_is_refused(h: Harness) -> None:
    await admin_says(h, "/credit 555 5 goodwill")
    ask = h.last(CHAT)
    confirm_data = next(b["callback_data"] for row in ask["reply_markup"]["inline_keyboard"] for b in row
                        if "Confirm" in b["text"])
    await h.tap(ADMIN, "Cancel", chat_id=CHAT)
    assert h.api.messages[(CHAT, ask["message_id"])]["text"] == "✖️ Cancelled. Nothing was changed."
    await h.press(ADMIN, confirm_data, message_id=ask["message_id"], chat_id=CHAT)
    assert h.toasts()[-1] == "This was already confirmed or cancelled."
    assert await snapshot(h) == (0, 0, 0)


async def test_another_admin_cannot_confirm_but_the_one_who_asked_still_can(h: Harness) -> None:
    await admin_says(h, "/credit 555 5 goodwill")
    await h.tap(OTHER_ADMIN, "Confirm", chat_id=CHAT)
    assert h.toasts()[-1] == "Only the admin who asked can confirm this."
    await h.tap(OTHER_ADMIN, "Cancel", chat_id=CHAT)
    assert h.toasts()[-1] == "Only the admin who asked can confirm this."
    assert await snapshot(h) == (0, 0, 0)
    await h.tap(ADMIN, "Confirm", chat_id=CHAT)
    assert await balance(h) == 500


async def test_an_expired_confirmation_is_refused(h: Harness) -> None:
    await admin_says(h, "/credit 555 5 goodwill")
    async with h.app.db.transaction() as tx:
        await execute(tx, "UPDATE confirmations SET expires_at = 0", ())
    await h.tap(ADMIN, "Confirm", chat_id=CHAT)
    assert h.toasts()[-1] == "This confirmation has expired. Run the command again."
    assert await snapshot(h) == (0, 0, 0)


async def test_an_outsider_in_the_admin_chat_cannot_press_confirm(h: Harness) -> None:
    await admin_says(h, "/credit 555 5 goodwill")
    await h.tap(USER, "Confirm", chat_id=CHAT)  # a member of the group, not an admin: IsAdmin stops the callback
    assert await snapshot(h) == (0, 0, 0)


# --- /debit ---

async def test_debit_within_the_balance(h: Harness) -> None:
    await pay(h, 1000)
    reply = await admin_says(h, "/debit 555 2.50 chargeback")
    assert "Debit $2.50 from @anna" in reply and "$10.00 → $7.50" in reply
    await h.tap(ADMIN, "Confirm", chat_id=CHAT)
    assert h.last_text(CHAT) == "✅ Debited $2.50 from @anna (id 555): new balance $7.50."
    assert await balance(h) == 750
    row = (await fetch_all(h.app.db.reader, "SELECT * FROM ledger WHERE kind = 'adjustment'", ()))[0]
    assert (row["amount_cents"], row["note"]) == (-250, "chargeback")
    await h.deliver()
    assert "reduced by $2.50" in h.last_text(USER)
    assert await users.balance_mismatches(h.app.db.reader) == []


async def test_debit_above_the_balance_is_refused_before_the_confirmation(h: Harness) -> None:
    await pay(h, 300)
    before = await snapshot(h)
    reply = await admin_says(h, "/debit 555 5 chargeback")
    assert reply == ("⛔ @anna (id 555) has $3.00: debiting $5.00 would take the balance below zero. "
                     "Nothing was changed; debit at most $3.00.")
    assert not any(b for m in h.api.sent_to(CHAT) for b in h.buttons(m) if "Confirm" in b)  # nothing to confirm
    assert await snapshot(h) == before
    await h.deliver()
    assert "reduced" not in h.last_text(USER)


async def test_debit_is_checked_against_the_balance_at_confirmation_time(h: Harness) -> None:
    await pay(h, 1000)
    await admin_says(h, "/debit 555 8 chargeback")  # fine when asked...
    await admin_says(h, "/debit 555 5 fee")
    await h.tap(ADMIN, "Confirm", chat_id=CHAT)  # the newest: $10 → $5
    first = next(m for m in h.api.sent_to(CHAT) if "Debit $8.00" in (m.get("text") or ""))
    data = next(b["callback_data"] for row in first["reply_markup"]["inline_keyboard"] for b in row
                if "Confirm" in b["text"])
    await h.press(ADMIN, data, message_id=first["message_id"], chat_id=CHAT)  # ...but not any more
    assert "below zero (it is $5.00)" in h.api.messages[(CHAT, first["message_id"])]["text"]
    assert await balance(h) == 500


async def test_debit_below_zero_when_the_operator_allows_it(api: FakeBotAPI, database_url: str) -> None:
    h = await start(api, database_url, ALLOW_NEGATIVE_BALANCE="true")
    try:
        reply = await admin_says(h, "/debit 555 5 advance")
        assert "will go below zero" in reply
        await h.tap(ADMIN, "Confirm", chat_id=CHAT)
        assert h.last_text(CHAT) == "✅ Debited $5.00 from @anna (id 555): new balance -$5.00."
        assert await balance(h) == -500
        assert await users.balance_mismatches(h.app.db.reader) == []
    finally:
        await h.close()


# --- bad input changes nothing ---

@pytest.mark.parametrize(("text", "expected"), [
    ("/credit", "Usage: /credit"),
    ("/credit 555", "Usage: /credit"),
    ("/credit 555 abc reason", "“abc” is not an amount"),
    ("/credit 555 5", "Add a reason"),
    ("/credit 555 5   ", "Add a reason"),
    ("/credit 555 5.123 r", "“5.123” is not an amount"),
    ("/credit 555 -5 r", "“-5” is not an amount"),
    ("/credit 555 0 r", "“0” is not an amount"),
    ("/credit 555 1e3 r", "“1e3” is not an amount"),
    ("/credit 555 1,000 r", "“1,000” is not an amount"),
    ("/credit nobody 5 r", "⚠️ No user nobody"),
    ("/credit 777 5 r", "⚠️ No user 777"),
    ("/credit @ghost 5 r", "⚠️ No user @ghost"),
    ("/debit", "Usage: /debit"),
    ("/debit 555 five r", "“five” is not an amount"),
    ("/credit 555 5 " + "x" * 201, "too long"),
])
async def test_bad_arguments_get_a_clear_answer_and_change_nothing(h: Harness, text: str, expected: str) -> None:
    reply = await admin_says(h, text)
    assert expected in reply
    assert ("Example:" in reply) == ("No user" not in expected and "too long" not in expected)
    assert h.buttons(h.last(CHAT)) == []  # no second tap offered
    assert await snapshot(h) == (0, 0, 0)
    assert await count(h, "SELECT COUNT(*) FROM confirmations") == 0


async def test_amounts_parse_like_the_users_amount_step(h: Harness) -> None:
    for typed, shown in (("5,15", "$5.15"), ("$7", "$7.00"), ("2.5", "$2.50")):
        assert f"Credit {shown} to" in await admin_says(h, f"/credit 555 {typed} r")


async def test_names_and_reasons_are_escaped(api: FakeBotAPI, database_url: str) -> None:
    h = await start(api, database_url)
    try:
        await h.send(USER, "/start", username="anna", first_name="<b>Anna</b> & co")
        reply = await admin_says(h, "/credit 555 1 <i>not markup</i> & more")
        assert "<i>not markup</i> & more" in reply
        assert "<b>Anna</b> & co" in await admin_says(h, "/user 555")
    finally:
        await h.close()


async def test_the_user_not_getting_the_note_does_not_undo_the_credit(h: Harness) -> None:
    await admin_says(h, "/credit 555 5 goodwill")
    await h.tap(ADMIN, "Confirm", chat_id=CHAT)
    h.api.fail_next("sendMessage", status=403, description="Forbidden: bot was blocked by the user")
    await h.deliver()
    assert await balance(h) == 500
    [note] = await fetch_all(h.app.db.reader, "SELECT status, last_error FROM notifications "
                                              "WHERE kind = 'balance_adjusted'", ())
    assert note["status"] == "failed" and "blocked" in note["last_error"]
    assert "Credited $5.00" in h.last_text(CHAT)


async def test_the_note_to_the_user_is_in_their_language(api: FakeBotAPI, database_url: str) -> None:
    h = await start(api, database_url)
    try:
        await h.send(USER, "/start", username="anna", language_code="ru")
        await admin_says(h, "/credit 555 5 возврат")
        await h.tap(ADMIN, "Confirm", chat_id=CHAT)
        await h.deliver()
        assert "пополнила ваш баланс на 5,00\u00a0$" in h.last_text(USER)
    finally:
        await h.close()


# --- /audit ---

async def test_audit_shows_who_did_what_and_why(h: Harness) -> None:
    assert await admin_says(h, "/audit") == "No admin actions yet."
    await admin_says(h, "/credit 555 5 refund for order 17")
    await h.tap(ADMIN, "Confirm", chat_id=CHAT, username="boss")
    await admin_says(h, "/coupon_add SPRING10 10%")
    text = await admin_says(h, "/audit", admin=OTHER_ADMIN)
    assert text.startswith("🧾 Recent admin actions")
    assert "@boss (501): credited $5.00 to user 555\n    Reason: refund for order 17" in text
    assert "added coupon SPRING10 (10%)" in text
    assert text.index("added coupon") < text.index("credited $5.00")  # newest first
    # Sentences, not the log's internal names and fields.
    for internal in ("coupon_add", "user:555", "cents=", "coupon:SPRING10"):
        assert internal not in text


async def test_audit_speaks_the_admin_chat_language(api: FakeBotAPI, database_url: str) -> None:
    h = await start(api, database_url, ADMIN_LOCALE="ru")
    try:
        await admin_says(h, "/credit 555 5 refund")
        await h.tap(ADMIN, "Подтвердить", chat_id=CHAT)
        text = await admin_says(h, "/audit")
        assert "зачислил(а) $5.00 пользователю 555" in text and "Причина: refund" in text
    finally:
        await h.close()


async def test_audit_shows_the_last_20_and_stays_within_telegrams_limit(h: Harness) -> None:
    for i in range(25):
        await admin_says(h, f"/credit 555 1 {'r' * 190}{i:02d}")
        await h.tap(ADMIN, "Confirm", chat_id=CHAT)
    mark = len(h.api.sent_to(CHAT))
    await admin_says(h, "/audit")
    text = "\n".join(h.texts(CHAT)[mark:])
    assert text.count("credited $1.00 to user 555") == 20
    assert all(len(part) <= 4096 for part in h.texts(CHAT)[mark:])


# --- who may use these ---

async def test_a_group_member_gets_only_the_refusal(h: Harness) -> None:
    for command in ("/user 555", "/credit 555 5 x", "/debit 555 5 x", "/audit"):
        await h.send(USER, command, chat_id=CHAT)
        assert h.last_text(CHAT) == "⛔ Admins only."
    assert await snapshot(h) == (0, 0, 0)


async def test_listed_admin_in_private_only_with_the_flag(api: FakeBotAPI, database_url: str) -> None:
    listed = 503
    h = await start(api, database_url, ADMIN_USER_IDS=str(listed))
    try:
        await h.send(listed, "/user 555")
        assert "Balance:" not in h.last_text(listed) and "didn't understand" in h.last_text(listed)
    finally:
        await h.close()
    h = await start(api, database_url, ADMIN_USER_IDS=str(listed), ADMIN_PRIVATE_COMMANDS="true")
    try:
        await h.send(listed, "/user 555")
        assert "Balance: $0.00" in h.last_text(listed)
        await h.send(ADMIN, "/user 555")  # an admin of the chat but not listed: private stays closed
        assert "Balance:" not in h.last_text(ADMIN)
    finally:
        await h.close()


# --- a username is never read from a stale holder (issue 8, item 3) -------------------------------------------------

async def test_a_renamed_user_is_found_under_the_new_name_and_the_old_holder_loses_it(h: Harness) -> None:
    await h.send(556, "/start", username="bob", first_name="Bob")
    # Bob renames himself (the bot doesn't see it yet), and someone else takes @bob and writes to the bot.
    await h.send(557, "/start", username="bob", first_name="Robert")
    text = await admin_says(h, "/credit @bob 5 refund")
    assert "id 557" in text and "556" not in text
    await h.send(556, "/start", username="bob_new", first_name="Bob")  # Bob writes again, under his new name
    assert "id 556" in await admin_says(h, "/user @bob_new")


async def test_a_username_carried_by_two_known_users_asks_for_the_id(h: Harness) -> None:
    """Two rows recorded with one username (e.g. from before usernames were kept unique): neither is guessed."""
    async with h.app.db.transaction() as tx:
        await users.upsert(tx, 558, "carol", "Carol", "en")
        await users.upsert(tx, 559, None, "Caroline", "en")
        await execute(tx, "UPDATE users SET username = 'Carol' WHERE id = 559")
    before = await snapshot(h)
    for command in ("/credit @carol 5 refund", "/debit @carol 5 oops", "/user @carol"):
        text = await admin_says(h, command)
        assert "558" in text and "559" in text and "Carol" in text and "Caroline" in text
        assert "Confirm" not in text
    assert await snapshot(h) == before
