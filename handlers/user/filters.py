"""Filters shared by the customer routers (checked in the event loop: handlers/in_loop.py)."""
from __future__ import annotations

from aiogram import F

from handlers.in_loop import InLoop

# Customers talk to the bot in private; group chats (the admin chat included) never reach these routers.
PRIVATE = InLoop(F.chat.type == "private")
PRIVATE_CALLBACK = InLoop(F.message.chat.type == "private")
# A message with text (not a sticker, photo or voice note): the free-text steps read it.
HAS_TEXT = InLoop(F.text)
# Free-text steps must not swallow commands: /balance typed at the amount step is still /balance.
NOT_COMMAND = InLoop(~F.text.startswith("/"))
