"""Who may run admin commands: an administrator of the admin chat (asked from Telegram, cached) or a listed id."""
from __future__ import annotations

import logging
import time

from collections.abc import Iterable

from aiogram import Bot

log = logging.getLogger(__name__)

ADMIN_LIST_TTL_SECONDS = 60


class AdminAccess:
    def __init__(self, admin_chat_id: int | None, listed_user_ids: Iterable[int], *,
                 private_commands: bool = False) -> None:
        self.admin_chat_id = admin_chat_id
        self._listed = frozenset(listed_user_ids)
        self._private_allowed = private_commands
        self._cache: tuple[float, frozenset[int]] | None = None

    def is_listed(self, user_id: int) -> bool:
        """In ADMIN_USER_IDS: the staff who may also pay out."""
        return user_id in self._listed

    async def allowed(self, bot: Bot, chat_id: int, chat_type: str, user_id: int) -> bool:
        if self.admin_chat_id is not None and chat_id == self.admin_chat_id:
            return self.is_listed(user_id) or user_id in await self._chat_admins(bot)
        if chat_type == "private":
            return self._private_allowed and self.is_listed(user_id)
        return False

    async def _chat_admins(self, bot: Bot) -> frozenset[int]:
        now = time.monotonic()
        if self._cache is not None and self._cache[0] > now:
            return self._cache[1]
        assert self.admin_chat_id is not None
        try:
            members = await bot.get_chat_administrators(self.admin_chat_id)
        except Exception:  # noqa: BLE001 - unknown means no: nobody gets in because Telegram hiccuped
            log.warning("could not read the admin chat's administrators", exc_info=True)
            return frozenset()
        admins = frozenset(m.user.id for m in members if not m.user.is_bot)
        self._cache = (now + ADMIN_LIST_TTL_SECONDS, admins)
        return admins
