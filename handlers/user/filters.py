"""Filters shared by the customer routers."""
from __future__ import annotations

from aiogram import F

# Customers talk to the bot in private; group chats (the admin chat included) never reach these routers.
PRIVATE = F.chat.type == "private"
PRIVATE_CALLBACK = F.message.chat.type == "private"
# Free-text steps must not swallow commands: /balance typed at the amount step is still /balance.
NOT_COMMAND = ~F.text.startswith("/")
