"""Filters shared by the customer routers."""
from __future__ import annotations

from aiogram import F

# Customers talk to the bot in private; group chats (the admin chat included) never reach these routers.
PRIVATE = F.chat.type == "private"
PRIVATE_CALLBACK = F.message.chat.type == "private"
