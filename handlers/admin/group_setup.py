"""Setting up the admin group: the bot tells a new group its id, and notices when the admin group changes its id.

A group that is not ADMIN_CHAT_ID hears from the bot once, when the bot joins it, and never again.
"""
from __future__ import annotations

import logging

from aiogram import F, Router
from aiogram.filters import JOIN_TRANSITION, ChatMemberUpdatedFilter
from aiogram.types import ChatMemberUpdated, Message

from handlers.admin_access import AdminAccess
from handlers.i18n import Locales
from handlers.in_loop import InLoop

log = logging.getLogger(__name__)

GROUPS = {"group", "supergroup"}


async def joined_group(event: ChatMemberUpdated, locales: Locales, admin_access: AdminAccess) -> None:
    """Added to a group: the admin group is greeted; any other group learns its id and how to make it the admin one."""
    t = locales.for_admin()  # whoever adds the bot is staff setting it up
    if event.chat.id == admin_access.admin_chat_id:
        await event.answer(t("admin.setup.is-admin-chat"))
        return
    log.info("added to group %s (%r), which is not ADMIN_CHAT_ID", event.chat.id, event.chat.title)
    await event.answer(t("admin.setup.not-admin-chat", chat_id=event.chat.id))


async def group_upgraded(message: Message, locales: Locales, admin_access: AdminAccess) -> None:
    """The admin group became a supergroup: same people, new id. Say exactly what to change (other groups: nothing)."""
    old, new = message.migrate_from_chat_id, message.chat.id
    if old is None or old != admin_access.admin_chat_id:
        return
    log.warning("the admin group %s became the supergroup %s: set ADMIN_CHAT_ID=%s and restart the bot", old, new, new)
    await message.answer(locales.for_admin()("admin.setup.upgraded", old=old, new=new))


def build_router() -> Router:
    router = Router(name="admin-group-setup")
    router.my_chat_member.register(joined_group, ChatMemberUpdatedFilter(member_status_changed=JOIN_TRANSITION),
                                   InLoop(F.chat.type.in_(GROUPS)))
    router.message.register(group_upgraded, InLoop(F.migrate_from_chat_id))
    return router
