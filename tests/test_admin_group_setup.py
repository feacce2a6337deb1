"""Setting up the admin group, as an operator does it: add the bot to a group, read the id, upgrade the group.

The real dispatcher and delivery worker against the fake Bot API.
"""
from __future__ import annotations

import logging
from pathlib import Path

from bot.app import check_admin_chat
from tests.fakes.bot_api import FakeBotAPI, bot_added_update, migrated_update
from tests.harness import ADMIN_CHAT_ID, Harness

OWNER, CUSTOMER = 501, 555
NEW_GROUP = -1009876543210
OLD_GROUP = -4567890  # a basic group's id, before its upgrade


async def test_a_new_group_is_told_its_id_once_and_then_nothing_else(api: FakeBotAPI, tmp_path: Path):
    h = await Harness.start(api, tmp_path / "bot.sqlite3")
    try:
        await h.feed(bot_added_update(NEW_GROUP, by_user_id=OWNER))
        said = h.texts(NEW_GROUP)
        assert len(said) == 1
        assert f"This group's id is {NEW_GROUP}" in said[0] and f"ADMIN_CHAT_ID={NEW_GROUP}" in said[0]
        # Made an administrator later: the same membership, nothing more to say.
        await h.feed(bot_added_update(NEW_GROUP, by_user_id=OWNER, old_status="member", new_status="administrator"))
        # Nothing else happens there: no commands, no menu, no refusal.
        for text in ("/start", "/help", "/balance", "/topup", "/gateway", "/credit 555 5 x", "hello"):
            await h.send(OWNER, text, chat_id=NEW_GROUP)
        assert h.texts(NEW_GROUP) == said
    finally:
        await h.close()


async def test_without_admin_chat_id_a_group_learns_how_to_become_the_admin_chat(api: FakeBotAPI, tmp_path: Path):
    h = await Harness.start(api, tmp_path / "bot.sqlite3", ADMIN_CHAT_ID="", ADMIN_LOCALE="ru")
    try:
        await h.feed(bot_added_update(NEW_GROUP, by_user_id=OWNER, chat_type="group"))
        assert f"ADMIN_CHAT_ID={NEW_GROUP}" in h.last_text(NEW_GROUP) and "Идентификатор" in h.last_text(NEW_GROUP)
    finally:
        await h.close()


async def test_the_admin_group_is_greeted_as_such(api: FakeBotAPI, tmp_path: Path):
    h = await Harness.start(api, tmp_path / "bot.sqlite3")
    try:
        await h.feed(bot_added_update(ADMIN_CHAT_ID, by_user_id=OWNER))
        assert "This is the admin chat" in h.last_text(ADMIN_CHAT_ID) and "/help" in h.last_text(ADMIN_CHAT_ID)
    finally:
        await h.close()


async def test_an_upgraded_admin_group_is_told_what_to_change_and_keeps_getting_lines(api: FakeBotAPI, tmp_path: Path):
    h = await Harness.start(api, tmp_path / "bot.sqlite3", ADMIN_CHAT_ID=str(OLD_GROUP))
    try:
        api.migrated_chats[OLD_GROUP] = NEW_GROUP
        await h.feed(migrated_update(OLD_GROUP, NEW_GROUP, by_user_id=OWNER))
        told = h.last_text(NEW_GROUP)
        assert f"new id: {NEW_GROUP}" in told and f"ADMIN_CHAT_ID={NEW_GROUP}" in told and "restart" in told

        # Lines addressed to the old id follow the group to its new id until the operator restarts.
        await h.send(CUSTOMER, "/start")
        deposit = await h.app.topup.create_deposit(user_id=CUSTOMER, chat_id=CUSTOMER, coin="USDT", network="TRON",
                                                   amount_cents=1000, coupon_code=None)
        await h.app.topup.simulate_payment(CUSTOMER, deposit.id)
        await h.deliver()
        assert f"Deposit #{deposit.id} paid" in h.last_text(NEW_GROUP)
    finally:
        await h.close()


async def test_another_groups_upgrade_is_ignored(api: FakeBotAPI, tmp_path: Path):
    h = await Harness.start(api, tmp_path / "bot.sqlite3")
    try:
        await h.feed(migrated_update(OLD_GROUP, NEW_GROUP, by_user_id=OWNER))
        assert h.texts(NEW_GROUP) == []
    finally:
        await h.close()


async def test_start_up_says_in_the_log_when_admin_chat_id_was_upgraded(api: FakeBotAPI, tmp_path: Path, caplog):
    h = await Harness.start(api, tmp_path / "bot.sqlite3", ADMIN_CHAT_ID=str(OLD_GROUP))
    try:
        api.migrated_chats[OLD_GROUP] = NEW_GROUP
        with caplog.at_level(logging.WARNING, logger="bot.app"):
            await check_admin_chat(h.bot, OLD_GROUP)
        assert f"set ADMIN_CHAT_ID={NEW_GROUP} and restart" in caplog.text
    finally:
        await h.close()
