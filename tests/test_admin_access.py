"""Who may use the admin chat: its Telegram administrators and ADMIN_USER_IDS; nobody else, nowhere else."""
from __future__ import annotations


from tests.fakes.bot_api import FakeBotAPI
from tests.harness import ADMIN_CHAT_ID, Harness

CHAT_ADMIN, MEMBER, LISTED, OUTSIDER = 501, 502, 503, 504
OTHER_GROUP = -100999


async def start(api: FakeBotAPI, database_url: str, **env: str) -> Harness:
    api.chat_admins[ADMIN_CHAT_ID] = [CHAT_ADMIN]
    return await Harness.start(api, database_url, ADMIN_USER_IDS=str(LISTED), **env)


async def test_chat_admins_and_listed_users_are_served(api: FakeBotAPI, database_url: str) -> None:
    h = await start(api, database_url)
    try:
        for user in (CHAT_ADMIN, LISTED):
            await h.send(user, "/help", chat_id=ADMIN_CHAT_ID)
            assert "Admin commands" in h.last_text(ADMIN_CHAT_ID)
    finally:
        await h.close()


async def test_a_member_gets_a_short_refusal_and_nothing_else(api: FakeBotAPI, database_url: str) -> None:
    h = await start(api, database_url)
    try:
        for command in ("/help", "/stats all", "/user 501", "/credit 501 5 x"):
            await h.send(MEMBER, command, chat_id=ADMIN_CHAT_ID)
            assert h.last_text(ADMIN_CHAT_ID) == "⛔ Admins only."
        assert len(h.texts(ADMIN_CHAT_ID)) == 4
    finally:
        await h.close()


async def test_other_groups_get_nothing_even_from_admins(api: FakeBotAPI, database_url: str) -> None:
    h = await start(api, database_url)
    try:
        for user in (CHAT_ADMIN, LISTED, OUTSIDER):
            await h.send(user, "/help", chat_id=OTHER_GROUP)
            await h.send(user, "/stats", chat_id=OTHER_GROUP)
        assert h.texts(OTHER_GROUP) == []
    finally:
        await h.close()


async def test_private_admin_commands_only_when_enabled_and_only_for_listed_ids(api: FakeBotAPI,
                                                                                database_url: str) -> None:
    h = await start(api, database_url)
    try:
        await h.send(LISTED, "/audit")
        assert "Recent admin actions" not in h.last_text(LISTED) and "didn't understand" in h.last_text(LISTED)
    finally:
        await h.close()
    h = await start(api, database_url, ADMIN_PRIVATE_COMMANDS="true")
    try:
        await h.send(CHAT_ADMIN, "/audit")  # a chat admin, but not listed: private stays closed
        assert "didn't understand" in h.last_text(CHAT_ADMIN)
    finally:
        await h.close()


async def test_the_admin_list_is_asked_from_telegram_and_cached(api: FakeBotAPI, database_url: str) -> None:
    h = await start(api, database_url)
    try:
        for _ in range(3):
            await h.send(CHAT_ADMIN, "/help", chat_id=ADMIN_CHAT_ID)
        assert len(api.calls_of("getChatAdministrators")) == 1
    finally:
        await h.close()


async def test_a_demoted_admin_loses_access_when_the_cached_list_expires(api: FakeBotAPI, database_url: str,
                                                                         monkeypatch) -> None:
    """The admin list is cached for ADMIN_LIST_TTL_SECONDS, not forever: a demoted admin keeps no money powers."""
    import asyncio

    import handlers.admin_access

    monkeypatch.setattr(handlers.admin_access, "ADMIN_LIST_TTL_SECONDS", 0.3)
    h = await start(api, database_url)
    try:
        await h.send(CHAT_ADMIN, "/help", chat_id=ADMIN_CHAT_ID)
        assert "Admin commands" in h.last_text(ADMIN_CHAT_ID)
        api.chat_admins[ADMIN_CHAT_ID] = []  # demoted in Telegram
        await asyncio.sleep(0.4)
        await h.send(CHAT_ADMIN, "/credit 503 5 bonus", chat_id=ADMIN_CHAT_ID)
        assert h.last_text(ADMIN_CHAT_ID) == "⛔ Admins only."
        assert len(api.calls_of("getChatAdministrators")) == 2
    finally:
        await h.close()


async def test_when_telegram_cant_say_who_is_admin_nobody_is(api: FakeBotAPI, database_url: str) -> None:
    """Fails closed: an error asking Telegram refuses the chat admin (listed ids still work), and is not cached."""
    h = await start(api, database_url)
    try:
        api.fail_next("getChatAdministrators", status=500, count=2)
        await h.send(CHAT_ADMIN, "/credit 503 5 bonus", chat_id=ADMIN_CHAT_ID)
        assert h.last_text(ADMIN_CHAT_ID) == "⛔ Admins only."
        await h.send(LISTED, "/help", chat_id=ADMIN_CHAT_ID)
        assert "Admin commands" in h.last_text(ADMIN_CHAT_ID)
        await h.send(CHAT_ADMIN, "/help", chat_id=ADMIN_CHAT_ID)  # the second failure
        assert h.last_text(ADMIN_CHAT_ID) == "⛔ Admins only."
        await h.send(CHAT_ADMIN, "/help", chat_id=ADMIN_CHAT_ID)  # Telegram answers again: served
        assert "Admin commands" in h.last_text(ADMIN_CHAT_ID)
    finally:
        await h.close()
