"""History: the user's deposits, newest first, a page at a time."""
from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from handlers.i18n import Translator
from handlers.ui import views
from handlers.ui.callbacks import HistoryCb, MenuAction, MenuCb
from handlers.ui.replies import replace_or_answer
from handlers.user.filters import PRIVATE, PRIVATE_CALLBACK
from services.store import Database, User
from services.store import deposits, ledger


PAGE_SIZE = 5


async def _page(db: Database, t: Translator, user_id: int, page: int) -> tuple[str, InlineKeyboardMarkup] | None:
    total = await deposits.count_for_user(db.reader, user_id)
    pages = max(1, -(-total // PAGE_SIZE))
    if not 0 <= page < pages:
        return None
    items = await deposits.for_user(db.reader, user_id, limit=PAGE_SIZE, offset=page * PAGE_SIZE)
    spends = await ledger.recent_spends(db.reader, user_id) if page == 0 else []
    return views.history_text(t, items, page, pages, spends), views.history_keyboard(t, page, pages, items)


async def history_command(message: Message, user: User, t: Translator, db: Database) -> None:
    page = await _page(db, t, user.id, 0)
    assert page is not None
    await message.answer(page[0], reply_markup=page[1])


async def history_button(cb: CallbackQuery, user: User, t: Translator, db: Database) -> None:
    await _show(cb, user, t, db, 0)


async def history_page(cb: CallbackQuery, callback_data: HistoryCb, user: User, t: Translator, db: Database) -> None:
    await _show(cb, user, t, db, callback_data.page)


async def _show(cb: CallbackQuery, user: User, t: Translator, db: Database, page_number: int) -> None:
    page = await _page(db, t, user.id, page_number)
    if page is None or not isinstance(cb.message, Message):
        await cb.answer(t("stale"))
        return
    await cb.answer()
    await replace_or_answer(cb.message, page[0], page[1], below=False)


def build_router() -> Router:
    router = Router(name="history")
    router.message.filter(PRIVATE)
    router.callback_query.filter(PRIVATE_CALLBACK)
    router.message.register(history_command, Command("history"))
    router.callback_query.register(history_button, MenuCb.filter(F.action == MenuAction.HISTORY))
    router.callback_query.register(history_page, HistoryCb.filter())
    return router
