"""Tests for the fake Telegram Bot API server, driven by a real aiogram Bot."""

from __future__ import annotations

import asyncio

import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramRetryAfter
from aiogram.filters import Command
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)

from tests.fakes.bot_api import FakeBotAPI, as_update, callback_update, message_update


@pytest.fixture
async def api():
    async with FakeBotAPI() as fake:
        yield fake


@pytest.fixture
async def bot(api: FakeBotAPI):
    bot = Bot("123:ABC", session=AiohttpSession(api=TelegramAPIServer.from_base(api.base_url)))
    try:
        yield bot
    finally:
        await bot.session.close()


def keyboard(*pairs: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=t, callback_data=d)] for t, d in pairs]
    )


async def test_get_me(api: FakeBotAPI, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.id == 1000 and me.is_bot and me.username == "topup_test_bot"
    assert api.calls[0].method == "getMe"
    assert api.tokens == {"123:ABC"}


async def test_send_message_records_decoded_params(api: FakeBotAPI, bot: Bot) -> None:
    msg = await bot.send_message(42, "hi", reply_markup=keyboard(("Top up", "topup")))
    assert msg.message_id == 100 and msg.chat.id == 42 and msg.chat.type == "private"
    assert msg.text == "hi" and msg.from_user.id == 1000
    assert msg.reply_markup.inline_keyboard[0][0].callback_data == "topup"

    (call,) = api.calls_of("sendmessage")  # case-insensitive lookup
    assert call.method == "sendMessage"
    assert call.params["chat_id"] == 42
    assert call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "topup"
    assert [m["text"] for m in api.sent_to(42)] == ["hi"]

    second = await bot.send_message(42, "again")
    assert second.message_id == 101
    group = await bot.send_message(-500, "group")
    assert group.message_id == 100 and group.chat.type == "supergroup" and group.chat.title


async def test_send_photo_multipart(api: FakeBotAPI, bot: Bot) -> None:
    msg = await bot.send_photo(42, BufferedInputFile(b"png-bytes", "qr.png"), caption="c")
    assert msg.caption == "c" and msg.photo

    call = api.calls_of("sendPhoto")[0]
    assert call.file("photo") == b"png-bytes"
    assert list(call.filenames.values()) == ["qr.png"]
    assert call.params["caption"] == "c"

    # The upload can be downloaded back through getFile + /file/.
    file = await bot.get_file(msg.photo[-1].file_id)
    data = await bot.download_file(file.file_path)
    assert data.read() == b"png-bytes"


async def test_send_document(api: FakeBotAPI, bot: Bot) -> None:
    msg = await bot.send_document(7, BufferedInputFile(b"%PDF", "receipt.pdf"))
    assert msg.document.file_name == "receipt.pdf"
    assert msg.document.mime_type == "application/pdf"


async def test_edit_message_text_and_not_modified(api: FakeBotAPI, bot: Bot) -> None:
    sent = await bot.send_message(42, "menu", reply_markup=keyboard(("A", "a")))
    edited = await bot.edit_message_text(
        "balance", chat_id=42, message_id=sent.message_id, reply_markup=keyboard(("B", "b"))
    )
    assert edited.text == "balance"
    assert api.sent_to(42)[0]["text"] == "balance"

    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            "balance", chat_id=42, message_id=sent.message_id, reply_markup=keyboard(("B", "b"))
        )
    assert api.calls_of("editMessageText", include_failed=True)[-1].failed

    # Dropping the keyboard is a modification (and removes it, like Telegram).
    edited = await bot.edit_message_text("balance", chat_id=42, message_id=sent.message_id)
    assert edited.reply_markup is None

    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=42, message_id=999)


async def test_edit_caption_and_markup(api: FakeBotAPI, bot: Bot) -> None:
    sent = await bot.send_photo(42, BufferedInputFile(b"img", "a.png"), caption="old")
    edited = await bot.edit_message_caption(chat_id=42, message_id=sent.message_id, caption="new")
    assert edited.caption == "new"
    edited = await bot.edit_message_reply_markup(
        chat_id=42, message_id=sent.message_id, reply_markup=keyboard(("X", "x"))
    )
    assert edited.reply_markup.inline_keyboard[0][0].text == "X"
    with pytest.raises(TelegramBadRequest, match="not modified"):
        await bot.edit_message_reply_markup(
            chat_id=42, message_id=sent.message_id, reply_markup=keyboard(("X", "x"))
        )


async def test_html_is_rendered_and_validated(api: FakeBotAPI, bot: Bot) -> None:
    msg = await bot.send_message(42, "<b>10</b> USDT &amp; more", parse_mode="HTML")
    assert msg.text == "10 USDT & more"
    assert api.calls_of("sendMessage")[0].params["text"] == "<b>10</b> USDT &amp; more"
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(42, "line<br>break", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(42, "<b>open", parse_mode="HTML")


async def test_fault_injection(api: FakeBotAPI, bot: Bot) -> None:
    api.fail_next("sendMessage", status=429, retry_after=1)
    with pytest.raises(TelegramRetryAfter) as info:
        await bot.send_message(42, "hi")
    assert info.value.retry_after == 1
    # Only the next call fails.
    await bot.send_message(42, "hi")

    api.fail_next("sendMessage", status=403, count=2)
    for _ in range(2):
        with pytest.raises(TelegramForbiddenError, match="blocked"):
            await bot.send_message(42, "hi")
    failed = [c for c in api.calls_of("sendMessage", include_failed=True) if c.failed]
    assert len(failed) == 3
    assert len(api.calls_of("sendMessage")) == 1


async def test_rate_limit() -> None:
    async with FakeBotAPI(rate_limit_per_second=2) as api:
        bot = Bot("1:A", session=AiohttpSession(api=TelegramAPIServer.from_base(api.base_url)))
        try:
            await bot.send_message(1, "a")
            await bot.send_message(1, "b")
            with pytest.raises(TelegramRetryAfter):
                await bot.send_message(1, "c")
        finally:
            await bot.session.close()


async def test_long_poll_round_trip(api: FakeBotAPI, bot: Bot) -> None:
    api.push_update(message_update(42, "/start"))
    api.push_update(callback_update(42, "menu:balance", message_id=5))
    assert api.pending_update_count() == 2

    updates = await bot.get_updates(offset=0, timeout=1)
    assert [u.update_id for u in updates] == [1, 2]
    assert updates[0].message.text == "/start"
    assert updates[0].message.entities[0].type == "bot_command"
    assert updates[1].callback_query.data == "menu:balance"

    # Confirming the offset drops them; an empty long-poll returns [] after timeout.
    assert await bot.get_updates(offset=updates[-1].update_id + 1, timeout=1) == []
    assert api.pending_update_count() == 0


async def test_long_poll_wakes_on_push(api: FakeBotAPI, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(offset=0, timeout=5))
    await asyncio.sleep(0.1)
    api.push_message(7, "hello")
    updates = await asyncio.wait_for(poll, 2)
    assert updates[0].message.text == "hello"


async def test_dispatcher_polling_and_wait_helpers(api: FakeBotAPI, bot: Bot) -> None:
    dp = Dispatcher()

    @dp.message(Command("start"))
    async def start(message: Message) -> None:
        await message.answer("Welcome", reply_markup=keyboard(("Balance", "balance")))

    @dp.callback_query()
    async def on_button(callback: CallbackQuery) -> None:
        await callback.message.edit_text(f"Balance: 0 ({callback.data})")
        await callback.answer()

    polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False, polling_timeout=1))
    try:
        api.push_message(42, "/start")
        welcome = await api.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == 42)
        assert welcome.params["text"] == "Welcome"

        mark = api.mark()
        api.push_callback(42, "balance")  # on the last message the bot sent to 42
        await api.wait_for_call("answerCallbackQuery", since=mark)
        assert api.sent_to(42)[-1]["text"] == "Balance: 0 (balance)"
        assert await api.wait_for(lambda a: len(a.calls_of("editMessageText")) == 1)

        with pytest.raises(TimeoutError, match="no matching sendPhoto"):
            await api.wait_for_call("sendPhoto", timeout=0.2)
    finally:
        await dp.stop_polling()
        await polling


async def test_feed_update_directly(api: FakeBotAPI, bot: Bot) -> None:
    dp = Dispatcher()

    @dp.callback_query()
    async def on_button(callback: CallbackQuery) -> None:
        await callback.message.edit_text("edited")

    update = callback_update(42, "x", message_id=5, text="menu")
    api.register_update(update)  # the message exists "in Telegram", so it can be edited
    await dp.feed_update(bot, as_update(update))
    assert api.messages[(42, 5)]["text"] == "edited"


async def test_admins_and_misc(api: FakeBotAPI, bot: Bot) -> None:
    api.chat_admins[-100] = [1, 2]
    admins = await bot.get_chat_administrators(-100)
    assert [(a.user.id, a.status) for a in admins] == [(1, "creator"), (2, "administrator")]
    assert await bot.get_chat_administrators(-200) == []
    assert (await bot.get_chat(-100)).id == -100
    assert (await bot.get_webhook_info()).url == ""
    assert await bot.delete_webhook() is True
    assert await bot.send_chat_action(42, "typing") is True
    assert await bot.answer_callback_query("1") is True
    assert await bot.delete_message(42, 1) is True
