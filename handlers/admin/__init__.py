"""The admin chat: every router here sits behind IsAdmin; a refusal router answers outsiders in the admin chat.

Each feature module exports build_router(); their commands are listed in ADMIN_COMMANDS for /help and the menu.
"""
from __future__ import annotations

from aiogram import Router

from handlers.admin import core, coupons, deposits, gateway, group_setup, users
from handlers.admin.confirm import ConfirmCb
from handlers.admin.filters import IsAdmin

# In the order /help shows them; each has an admin.command.<name> description for the command menu.
ADMIN_COMMANDS = ("help", "stats", "pending", "deposit", "find", "confirm", "user", "credit", "debit", "coupon_add",
                  "coupons", "coupon_off", "gateway", "payout", "payouts", "export", "audit")


def build_router() -> Router:
    admin = Router(name="admin")
    admin.message.filter(IsAdmin())
    admin.callback_query.filter(IsAdmin())
    admin.include_routers(core.build_router(), deposits.build_router(), users.build_router(),
                          coupons.build_router(), gateway.build_router())
    outer = Router(name="admin-chat")
    outer.include_routers(group_setup.build_router(), admin, core.build_refusal_router(
        ADMIN_COMMANDS, (ConfirmCb, deposits.AdminDepositCb, gateway.PayoutCb)))
    return outer

