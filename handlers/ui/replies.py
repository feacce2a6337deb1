"""How a button's answer is shown: in place of a menu, or below a message worth keeping."""
from __future__ import annotations

from aiogram.types import InlineKeyboardMarkup, Message


async def replace_or_answer(message: Message, text: str, keyboard: InlineKeyboardMarkup, *, below: bool) -> Message:
    """Edit a menu in place; answer under a receipt or a deposit card (photos can't become text anyway).

    Returns the message now showing the answer, so a flow can track it.
    """
    if below or message.text is None:
        return await message.answer(text, reply_markup=keyboard)
    edited = await message.edit_text(text, reply_markup=keyboard)
    return edited if isinstance(edited, Message) else message
